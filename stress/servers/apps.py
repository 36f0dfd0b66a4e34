"""Hello-world WSGI / ASGI apps every HTTP peer serves (and ``threadswoole serve`` will).

Bare callables, no framework, so that the figure is the server's cost per request:
``wsgi_hello`` / ``asgi_hello`` answer ``GET /`` with ``200 Hello, World!``;
``wsgi_sleep`` blocks ``SLEEP_S`` (2 ms) first, like a handler waiting on a database;
``wsgi_cpu`` computes for a millisecond or two first (pure Python: what free-threading scales).
Served as ``stress.servers.apps:<name>`` (the benchmark runs every server from the repo root).
"""
from __future__ import annotations

import time

BODY = b"Hello, World!"
SLEEP_S = 0.002
_WSGI_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
_ASGI_START = {"type": "http.response.start", "status": 200,
               "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]}
_ASGI_BODY = {"type": "http.response.body", "body": BODY}


def wsgi_hello(environ, start_response):
    start_response("200 OK", _WSGI_HEADERS)
    return [BODY]


def wsgi_sleep(environ, start_response):
    time.sleep(SLEEP_S)
    start_response("200 OK", _WSGI_HEADERS)
    return [BODY]


async def asgi_hello(scope, receive, send):
    if scope["type"] != "http":       # lifespan: accept startup/shutdown, nothing to do
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    await send(_ASGI_START)
    await send(_ASGI_BODY)


CPU_LOOPS = 20_000


def wsgi_cpu(environ, start_response):
    """A CPU-bound handler (~1-2 ms of pure-Python arithmetic): what free-threading is for."""
    total = 0
    for i in range(CPU_LOOPS):
        total += i * i % 7
    start_response("200 OK", _WSGI_HEADERS if total >= 0 else [])
    return [BODY]
