"""Micro-benchmark of `threadswoole serve`'s request path, in process, per request.

    python3 -m stress.micro_serve            # about 15 s
    python3 -m stress.micro_serve --quick

The WSGI and ASGI handlers get a parsed ``GET /`` (the codec's `HttpRequest` event) and run the
hello-world applications of ``stress/servers/apps.py``; the send path is a null function, so
the figures are the handlers' own CPU cost (environ/scope, the call, the response head),
without sockets or the reactor. Also the pieces of the ASGI path: starting a Task eagerly on
the bridged loop, a bare coroutine, and the worker-thread hand-over a thread-pool design
would pay per request (submit + wait on a one-thread executor). CPU time (`process_time`),
best of several rounds; compare rows of one run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time
from typing import Any, Callable

from stress.servers.apps import asgi_hello, wsgi_hello
from threadswoole import _context
from threadswoole.loop.reactor import Reactor
from threadswoole.protocol.http import HttpCodec
from threadswoole.serve.asgi import AsgiHandler, AsgiProtocol
from threadswoole.serve.options import ServeOptions
from threadswoole.serve.wsgi import WsgiHandler, WsgiProtocol
from threadswoole.server import settings as schema
from threadswoole.state.shared import SharedState

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class _Counters:
    callback_errors = 0
    response = 0


class _Runtime:
    worker_id = 0
    counters = _Counters()
    requests = 0

    def count_request(self) -> None:
        pass

    def check_max_request(self) -> None:
        pass

    def call(self, event: str, callback: Callable[..., Any], *args: Any) -> Any:
        return callback(*args)


class _Router:
    def __init__(self, state: SharedState) -> None:
        self.state = state

    def pause(self, session: int, paused: bool) -> bool:
        return True

    def close(self, session: int, reset: bool) -> bool:
        return True


class _Server:
    setting = {"buffer_output_size": 2 * 1024 * 1024}


class _Dispatcher:
    def __init__(self, state: SharedState) -> None:
        self.runtime = _Runtime()
        self.router = _Router(state)
        self.server = _Server()

    def run_request(self, event: str, callback: Callable[..., Any], *args: Any) -> Any:
        return callback(*args)


def measure(fn: Callable[[], Any], rounds: int, number: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds, number = (3, 5000) if args.quick else (7, 20000)
    state = SharedState(stat_slots=1, worker_slots=1, acceptors=1, capacity=64)
    reactor = Reactor("micro")
    ctx = _context.current()
    ctx.loop = reactor
    ctx.worker_id = 0
    ctx.send_function = lambda session, data, server_socket=-1: True
    settings = schema.port_defaults()
    try:
        event = HttpCodec().feed(WRK)[0]
        wsgi = WsgiHandler(WsgiProtocol(settings, app=wsgi_hello, options=ServeOptions()), _Dispatcher(state))
        asgi_options = ServeOptions(asgi_app=asgi_hello, lifespan="off")
        asgi = AsgiHandler(AsgiProtocol(settings, app=asgi_hello, options=asgi_options), _Dispatcher(state))
        port = type("Port", (), {"host": "127.0.0.1"})()
        loop = asgi_options.side().asgi.loop

        async def nothing() -> None:
            return None

        pool = concurrent.futures.ThreadPoolExecutor(1)
        rows = [
            ("WSGI handler: GET / -> wsgi_hello -> head + body", lambda: wsgi.event(port, 1, 0, event)),
            ("ASGI handler: GET / -> asgi_hello -> head + body", lambda: asgi.event(port, 1, 0, event)),
            ("  BridgedLoop.start_task(coroutine that returns)", lambda: loop.start_task(nothing())),
            ("  a bare coroutine run to its end", lambda: nothing().close()),
            ("thread hand-over: executor.submit(f).result()", lambda: pool.submit(int).result()),
        ]
        for label, fn in rows:
            fn()
            print(f"{label:<60} {measure(fn, rounds, number):8.2f} us")
        pool.shutdown()
        loop.close()
    finally:
        reactor.close()
        state.destroy()
        ctx.reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
