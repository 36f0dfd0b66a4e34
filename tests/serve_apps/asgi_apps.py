"""ASGI applications for tests/test_serve_asgi.py: `app` behaves; `bad` misbehaves on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import threading

EVENTS: list[str] = []


async def _lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started_by"] = os.getpid()
            EVENTS.append("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            EVENTS.append("shutdown")
            os.write(1, b"LIFESPAN SHUTDOWN %d\n" % os.getpid())  # one write: workers share the pipe
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive):
    chunks = []
    messages = 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        chunks.append(message.get("body", b""))
        messages += 1
        if not message.get("more_body"):
            return b"".join(chunks), messages


async def _respond(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] == "/ws/reject":
        await send({"type": "websocket.close", "code": 1008})
        return
    subprotocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None,
                "headers": [(b"x-accepted", b"yes")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(f"disconnect {message['code']}")
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        return await _lifespan(scope, receive, send)
    if kind == "websocket":
        return await _websocket(scope, receive, send)
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]  # as Starlette routes: the mount point is not part of the route
    if path == "/hello":
        await _respond(send, 200, b"Hello, World!", [(b"x-pid", str(os.getpid()).encode())])
    elif path.startswith("/scope"):
        body, _ = await _body(receive)
        data = {k: v for k, v in scope.items() if k not in ("headers", "state", "extensions")}
        data["raw_path"] = scope["raw_path"].decode("latin-1")
        data["query_string"] = scope["query_string"].decode("latin-1")
        data["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        data["state"] = dict(scope.get("state", {}))
        data["task"] = asyncio.current_task() is not None
        data["thread"] = threading.current_thread().name
        await _respond(send, 200, json.dumps(data).encode())
    elif path == "/echo":
        body, messages = await _body(receive)
        await _respond(send, 200, body, [(b"x-messages", str(messages).encode())])
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for index in range(5):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b"part %d\n" % index, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big-stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(64 * 1024 * 1024).encode())]})
        block = b"y" * 65536
        for _ in range(1024):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/disconnect":
        await _body(receive)
        message = await receive()  # waits until the client goes away
        EVENTS.append(message["type"])
        os.write(1, b"SAW %s\n" % message["type"].encode())
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"0.2"))
        await _respond(send, 200, b"slept", [(b"x-pid", str(os.getpid()).encode())])
    elif path == "/pathsend":
        file_path = scope["query_string"].decode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": file_path})
    elif path == "/cookies":
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", b"/hello"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _respond(send, 404, b"no such page")


async def bad(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/raise-before":
        raise RuntimeError("failing before the response, on purpose")
    if path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first part", "more_body": True})
        raise RuntimeError("failing in the middle of the body, on purpose")
    if path == "/no-response":
        return
    if path == "/hop-by-hop":
        await _respond(send, 200, b"hop", [(b"transfer-encoding", b"chunked")])
        return
    if path == "/overrun":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"1234567890"})
        return
    if path == "/bad-status":
        await send({"type": "http.response.start", "status": "200 OK", "headers": []})
        return
    await _respond(send, 200, b"fine")


def not_an_app():
    return "I take no scope"


NOT_CALLABLE = 42
