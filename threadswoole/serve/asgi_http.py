"""The ASGI ``http`` scope: one request's ``receive`` / ``send`` and its response bytes.

``receive()`` returns the body as ``http.request`` messages: the whole of it at once when the
codec holds it (bodies up to 64 KiB), else one message per `HttpBodyChunk` as it arrives
(``more_body`` until the last; the connection is paused while more than 1 MiB waits unread).
After the body it waits, and returns ``http.disconnect`` once the client went away or the
response is complete. ``send()`` takes ``http.response.start`` (status, headers; checked as
for WSGI, see `head`) and ``http.response.body`` (``more_body`` streams: chunked unless the
application gave a Content-Length, which is enforced), and ``http.response.pathsend`` (a file
path, sent with ``sendfile(2)``). It waits (``await``) while the connection is congested, so a
slow client slows the application down instead of filling memory, and raises `ClientDisconnected`
(an ``OSError``, ASGI 2.4) once the client is gone.

An application that raises before ``http.response.start`` gets a 500; after it, or one that
returns without finishing its response, has its connection closed (the client sees the cut).
Either way the traceback is logged and counted as a callback error.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
import types
from typing import Any

from threadswoole.protocol.http.writer import LAST_CHUNK
from threadswoole.serve.head import NO_BODY_STATUS, HeaderError, asgi_headers, assemble, error_page
from threadswoole.serve.wsgi_response import CHUNKED, CONNECTION_CLOSE, KEEP_ALIVE_10

log = logging.getLogger("threadswoole.serve")

__all__ = ["HttpCycle", "ClientDisconnected"]

_COROUTINE = types.CoroutineType
INPUT_HIGH_WATER = 1024 * 1024
INPUT_LOW_WATER = 256 * 1024
_STATUS_LINES: dict[int, bytes] = {}




async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class ClientDisconnected(OSError):
    """``send()`` on a connection the client closed (ASGI 2.4: a server-specific OSError)."""


def _status_line(status: Any, cache: dict[int, bytes] = _STATUS_LINES) -> bytes:
    line = cache.get(status)
    if line is None:
        if type(status) is not int or not 100 <= status <= 999:
            raise HeaderError(f"status must be an int from 100 to 999, not {status!r}")
        from threadswoole.protocol.http.writer import status_line

        line = cache[status] = status_line(status)
    return line


class InputWaiter:
    """What the HTTP and the WebSocket cycle share: `receive()` parks on one future until the
    loop thread delivers input (`_wake`) or the connection goes (`disconnect`)."""

    waiter: asyncio.Future | None = None
    disconnected = False
    handler: Any

    async def _wait_for_input(self) -> None:
        self.waiter = self.handler.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def disconnect(self) -> None:
        """The connection is gone (closed by either side, or dropped)."""
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HttpCycle(InputWaiter):
    """One HTTP request of an ASGI application (see the module docstring)."""

    # Defaults as class attributes: a request sets only what differs (it is the hot path).
    chunks: collections.deque | None = None  # body chunks not received yet (a streamed body)
    buffered = 0
    started = False  # http.response.start received
    head_sent = False
    complete = False  # the last body byte was handed over
    finished = False  # response_done ran: the connection's next request may start
    code = 0
    status_line = b""
    block: Any = None
    chunked = False
    expected: int | None = None
    sent = 0
    close = False
    paused = False
    channel: Any = None
    began = 0.0

    def __init__(self, handler: Any, session: int, event: Any, scope: dict) -> None:
        self.handler = handler
        self.session = session
        self.event = event
        self.scope = scope
        self.body: bytes | None = event.body  # the first http.request message, not yet received
        self.more_body = not event.complete
        self.no_body = event.method == "HEAD"
        self.keep_alive = event.keep_alive
        self.bytes_in = len(event.body)
        if handler.recorder is not None:
            self.began = time.perf_counter()

    def start(self, app: Any) -> None:
        """Run ``app(scope, receive, send)`` as a task started eagerly: most requests are over
        when this returns; the others end in `ended` when their task does."""
        handler = self.handler
        try:
            coroutine = app(self.scope, self.receive, self.send)
            if type(coroutine) is not _COROUTINE:
                coroutine = _awaited(coroutine)  # an awaitable that is not a coroutine
        except Exception:
            self._failed_call("the application raised")
            return
        task = handler.loop.start_task(coroutine)
        if task.done():
            self.ended(task)
        else:
            handler.asgi.track(task, self.ended)

    def ended(self, task: asyncio.Task) -> None:
        """The application's task is done: a response it left unfinished is failed here."""
        if task.cancelled():
            self._fail()
            return
        error = task.exception()
        if error is None:
            if not self.complete and not self.disconnected:
                log.error("%s %s: the application returned without %s", self.event.method, self.event.target,
                          "finishing its response" if self.started else "starting a response")
                self.handler.count_error()
                self._fail()
        elif not isinstance(error, ClientDisconnected):
            log.error("%s %s: the application raised", self.event.method, self.event.target, exc_info=error)
            self.handler.count_error()
            self._fail()

    def _failed_call(self, what: str) -> None:
        log.exception("%s %s: %s", self.event.method, self.event.target, what)
        self.handler.count_error()
        self._fail()

    # -- receive --------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        body = self.body
        if body is not None:
            self.body = None
            return {"type": "http.request", "body": body, "more_body": self.more_body}
        while True:
            chunks = self.chunks
            if chunks:
                data, final = chunks.popleft()
                self.buffered -= len(data)
                if self.paused and self.buffered <= INPUT_LOW_WATER:
                    self.paused = False
                    self.handler.pause(self.session, "input", False)
                if final:
                    self.more_body = False
                return {"type": "http.request", "body": data, "more_body": not final}
            if self.disconnected or (self.complete and not self.more_body):
                return {"type": "http.disconnect"}
            await self._wait_for_input()

    def feed(self, data: bytes, final: bool) -> None:
        """A body chunk from the codec (the loop thread)."""
        if self.chunks is None:
            self.chunks = collections.deque()
        self.chunks.append((data, final))
        self.buffered += len(data)
        self.bytes_in += len(data)
        if final:
            self.more_body = False
        if not self.paused and self.buffered > INPUT_HIGH_WATER and not final:
            self.paused = True
            self.handler.pause(self.session, "input", True)
        self._wake()

    # -- send ---------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("http.response.body after the response was complete")
            if self.disconnected:
                raise ClientDisconnected("the client closed the connection")
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = bytes(body)
            more = message.get("more_body", False)
            if not self.head_sent and not more:
                self._single(body)
                return
            await self._stream(body, more)
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.code = message["status"]
            caches = self.handler.head_caches  # this worker's (serve/head.py: why not shared)
            self.status_line = _status_line(self.code, caches.asgi_status)
            self.block = asgi_headers(message.get("headers", ()), caches.asgi)
            self.started = True
            if self.disconnected:
                raise ClientDisconnected("the client closed the connection")
        elif kind == "http.response.pathsend":
            await self._pathsend(message["path"])
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in the http scope")

    def _connection(self) -> bytes:
        if not self.keep_alive or self.block.close or self.close or self.handler.stopping:
            self.close = True
            return CONNECTION_CLOSE
        return KEEP_ALIVE_10 if self.event.version == "1.0" else b""

    def _single(self, body: bytes) -> None:
        block = self.block
        framing = b""
        if self.code < 200 or self.code in NO_BODY_STATUS:
            body = b""
        else:
            expected = block.content_length
            if expected is None:
                framing = b"Content-Length: %d\r\n" % len(body)
            elif expected != len(body):
                self.close = True
                if len(body) > expected:
                    log.error("%s %s: the application sent more than its Content-Length (%d)", self.event.method,
                              self.event.target, expected)
                    body = body[:expected]
            if self.no_body:
                body = b""
        head = assemble(self.status_line, block, self.handler.reactor.clock, framing + self._connection())
        self.head_sent = True
        self.sent = len(body)
        self.complete = True
        self.handler.send(self, head + body if body else head)
        self.handler.response_done(self)

    async def _stream(self, body: bytes, more: bool) -> None:
        data = body
        if not self.head_sent:
            framing = b""
            code = self.code
            if code < 200 or code in NO_BODY_STATUS or self.no_body:
                self.no_body = True
            elif self.block.content_length is not None:
                self.expected = self.block.content_length
            elif self.event.version == "1.1":
                framing = CHUNKED
                self.chunked = True
            else:
                self.close = True
            prefix = assemble(self.status_line, self.block, self.handler.reactor.clock, framing + self._connection())
            self.head_sent = True
        else:
            prefix = b""
        if self.no_body:
            data = b""
        elif self.expected is not None:
            room = self.expected - self.sent
            if len(data) > room:
                log.error("%s %s: the application sent more than its Content-Length (%d)", self.event.method,
                          self.event.target, self.expected)
                data = data[:room]
                self.close = True
                more = False
        self.sent += len(data)
        if self.chunked and data:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if not more:
            self.complete = True
            if self.chunked:
                data += LAST_CHUNK
            elif self.expected is not None and self.sent < self.expected:
                self.close = True
        if prefix or data:
            self.handler.send(self, prefix + data)
        if not more:
            self.handler.response_done(self)
            return
        await self.handler.drained(self)

    async def _pathsend(self, path: str) -> None:
        if not self.started or self.complete or self.head_sent:
            raise RuntimeError("http.response.pathsend must follow http.response.start and be the whole body")
        size = os.stat(path).st_size
        framing = b"" if self.block.content_length is not None else b"Content-Length: %d\r\n" % size
        send_body = not (self.code < 200 or self.code in NO_BODY_STATUS or self.no_body)
        head = assemble(self.status_line, self.block, self.handler.reactor.clock, framing + self._connection())
        self.head_sent = True
        self.complete = True
        self.handler.send(self, head)
        if send_body and size:
            self.sent = size
            self.handler.sendfile(self, path, size)
        self.handler.response_done(self)

    def _fail(self) -> None:
        """After a failure: a 500 if nothing went out yet, else close the connection."""
        if self.finished:
            return  # the response was whole before the failure
        if not self.head_sent and not self.disconnected:
            self.code = 500
            self.head_sent = True
            self.handler.send(self, error_page(500, self.handler.reactor.clock))
        self.close = True
        self.complete = True
        self.handler.response_done(self)
