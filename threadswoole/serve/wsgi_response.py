"""One WSGI call and its response: ``start_response``, ``write()``, the iterable, the bytes.

PEP 3333 throughout: the head goes out with the first non-empty body chunk (or at the end);
``start_response(..., exc_info)`` replaces the headers before that and re-raises after; the
legacy ``write()`` sends at once; ``close()`` of the iterable is always called. Framing is
the server's: the application's ``Content-Length`` is kept (and enforced: bytes beyond it are
not sent and the connection closes; fewer bytes close it too, so the client sees the cut);
without one, a single-item list gets one computed, anything else is chunked (HTTP/1.1) or ends
with the connection (HTTP/1.0). HEAD answers and 1xx/204/304 carry no body.
``wsgi.file_wrapper`` over a regular file with a path is sent with ``sendfile(2)``.

An application that raises before the head is sent gets a 500 (and the connection closes);
after, the connection closes mid-body. Either way the traceback is logged and counted in
``stats()['callback_error_count']``, and the worker carries on.

Where it runs: `call` in the worker's loop thread; if the peer cannot keep up, the rest of
the iteration is handed to the worker's application thread (`app_thread`), and so is the
whole call for a body that streams (`call_in_thread`). Bytes go out through the handler's
direct send or, once anything waits, through the session's `Channel`.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any

from threadswoole._context import current
from threadswoole.errors import ErrorCode
from threadswoole.protocol.http.writer import LAST_CHUNK
from threadswoole.serve.environ import FileWrapper
from threadswoole.serve.head import NO_BODY_STATUS, assemble, error_page, wsgi_headers, wsgi_status

log = logging.getLogger("threadswoole.serve")

__all__ = ["WsgiExchange"]

KEEP_ALIVE_10 = b"Connection: keep-alive\r\n"  # these three: also the ASGI cycle's head lines
CONNECTION_CLOSE = b"Connection: close\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


class WsgiExchange:
    """A request's application call and its response (see the module docstring)."""

    __slots__ = ("handler", "session", "started", "code", "status_line",
                 "block", "head_sent", "expected", "body_sent", "chunked", "no_body", "close", "channel",
                 "threaded", "input", "iterator", "result", "bytes_in", "environ", "event")

    def __init__(self, handler: Any, session: int, event: Any, started: float) -> None:
        self.handler = handler
        self.session = session
        self.started = started
        self.code = 0
        self.status_line = b""
        self.block: Any = None
        self.head_sent = False
        self.expected: int | None = None  # the Content-Length the head announced
        self.body_sent = 0
        self.chunked = False
        self.no_body = False
        self.close = False  # close the connection after this response
        self.channel: Any = None
        self.threaded = False
        self.input: Any = None  # the StreamInput of a streamed body
        self.iterator: Any = None
        self.result: Any = None
        self.bytes_in = len(event.body)
        self.environ: Any = None
        self.event = event

    # -- what the application calls -----------------------------------------------------------
    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.block is not None:
            raise AssertionError("start_response() was already called (pass exc_info to replace the response)")
        caches = self.handler.head_caches  # this worker's (serve/head.py: why not shared)
        known = caches.status.get(status)  # the cache hits of wsgi_status / wsgi_headers, inlined
        self.code, self.status_line = known if known is not None else wsgi_status(status, caches.status)
        try:
            block = caches.wsgi.get(tuple(headers)) if type(headers) is list else None
        except TypeError:  # an unhashable item: wsgi_headers says what is wrong
            block = None
        self.block = block if block is not None else wsgi_headers(headers, caches.wsgi)
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's legacy ``write()`` callable: the bytes go out now (after the head)."""
        if self.block is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if data:
            self._body(data)

    # -- running it ---------------------------------------------------------------------------
    def call(self, app: Any, environ: dict) -> bool:
        """In the loop thread. True when the exchange is over; False when its iteration was
        handed to the application thread (which calls `handler.exchange_done` when it ends)."""
        self.environ = environ
        try:
            result = app(environ, self.start_response)
        except Exception:
            self._failed("the application raised")
            self._finish_connection()
            return True
        if type(result) is list and len(result) == 1 and self.block is not None and not self.head_sent:
            body = result[0]
            if type(body) is bytes:  # the common answer: head and body in one send
                self._single(body)
                return True
        if type(result) is FileWrapper and self._sendfile(result):
            return True
        self.result = result
        try:
            self.iterator = iter(result)
        except Exception:
            self._failed("the application returned a non-iterable")
            self._finish_connection()
            self._close_result()
            return True
        if not self._iterate(inline=True):
            self.handler.hand_over(self)
            return False
        return True

    def call_in_thread(self, app: Any, environ: dict) -> None:
        """In the application thread: the whole call, for a request whose body streams."""
        self.threaded = True
        self.environ = environ
        try:
            result = app(environ, self.start_response)
        except Exception:
            self._failed("the application raised")
            self._finish_connection()
            self.handler.exchange_done(self)
            return
        self.result = result
        try:
            self.iterator = iter(result)
        except Exception:
            self._failed("the application returned a non-iterable")
            self._finish_connection()
            self._close_result()
            self.handler.exchange_done(self)
            return
        self.continue_in_thread()

    def continue_in_thread(self) -> None:
        """In the application thread: the rest of the iteration, then the end."""
        self.threaded = True
        self._iterate(inline=False)
        self.handler.exchange_done(self)

    def _iterate(self, *, inline: bool) -> bool:
        """Send every chunk, then end the response and close the iterable; False when the
        peer fell behind in the loop thread (the iteration continues in the app thread)."""
        try:
            for data in self.iterator:
                if type(data) is not bytes:
                    raise TypeError(f"the application yielded {type(data).__name__}, not bytes")
                if data and not self._body(data):
                    break  # the peer is gone, or the application went past its Content-Length
                if inline and self.channel is not None and self.channel.congested:
                    return False
            else:
                self._end()
                self._close_result()
                return True
        except Exception:
            self._failed("the application raised while iterating its response")
        self._end_cut()
        self._close_result()
        return True

    def _close_result(self) -> None:
        close = getattr(self.result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                self._failed("the close() of the application's iterable raised")

    # -- the response's bytes ---------------------------------------------------------------
    def _connection(self) -> bytes:
        """The Connection header this response needs; decides whether the connection closes."""
        if not self.event.keep_alive or self.block.close or self.close or self.handler.stopping:
            self.close = True
            return CONNECTION_CLOSE
        return KEEP_ALIVE_10 if self.event.version == "1.0" else b""

    def _single(self, body: bytes) -> None:
        block = self.block
        framing = b""
        code = self.code
        if code < 200 or code in NO_BODY_STATUS:
            body = b""
        else:
            expected = block.content_length
            if expected is None:
                framing = b"Content-Length: %d\r\n" % len(body)
            elif len(body) != expected:
                body = self._mismatch(body, expected)
            if self.event.method == "HEAD":
                body = b""
        handler = self.handler
        event = self.event
        if not event.keep_alive or block.close or self.close or handler.stopping:  # (_connection, inlined)
            self.close = True
            framing += CONNECTION_CLOSE
        elif event.version == "1.0":
            framing += KEEP_ALIVE_10
        now = handler.reactor.clock
        prefix = block.prefix  # assemble's cache hit, inlined: this second's head start
        if prefix[1] is self.status_line and prefix[0] == int(now):
            head = prefix[2] + framing + b"\r\n"
        else:
            head = assemble(self.status_line, block, now, framing)
        self.head_sent = True
        self.body_sent = len(body)
        data = head + body if body else head
        # _send's common case inlined: nothing waits for this session (no channel), the socket takes it
        if self.threaded or self.channel is not None or handler.channels or not handler.send_now(self.session, data):
            self._send_queued(data)
        if self.close:
            self._finish_connection()

    def _mismatch(self, body: bytes, expected: int) -> bytes:
        self.close = True
        if len(body) > expected:
            log.error("%s: the application wrote %d body bytes with Content-Length: %d; the rest is not sent",
                      self._where(), len(body), expected)
            return body[:expected]
        log.error("%s: the application wrote %d of %d body bytes (Content-Length); closing the connection",
                  self._where(), len(body), expected)
        return body

    def _stream_head(self) -> bytes:
        block = self.block
        framing = b""
        if self.code < 200 or self.code in NO_BODY_STATUS or self.event.method == "HEAD":
            self.no_body = True
        elif block.content_length is not None:
            self.expected = block.content_length
        elif self.event.version == "1.1":
            framing = CHUNKED
            self.chunked = True
        else:
            self.close = True  # HTTP/1.0 without a length: the body ends with the connection
        self.head_sent = True
        return assemble(self.status_line, block, self.handler.clock(), framing + self._connection())

    def _body(self, data: bytes) -> bool:
        """One non-empty chunk of body; False when nothing more should be sent (the peer is
        gone, or the application went past its Content-Length: logged, the connection closes)."""
        if self.block is None:
            raise RuntimeError("the application produced body bytes without calling start_response()")
        head = b"" if self.head_sent else self._stream_head()
        if self.no_body:
            data = b""
        elif self.expected is not None:
            room = self.expected - self.body_sent
            if len(data) > room:
                log.error("%s: the application wrote more than its Content-Length (%d); the rest is not sent",
                          self._where(), self.expected)
                self.close = True
                data = data[:room]
                self.body_sent += len(data)
                if head or data:
                    self._send(head + data)
                return False
        elif self.chunked:
            self.body_sent += len(data)
            return self._send(head + b"%x\r\n%s\r\n" % (len(data), data))
        self.body_sent += len(data)
        if head or data:
            return self._send(head + data)
        return True

    def _end(self) -> None:
        """The iterable is exhausted: end the body properly, or close when it fell short."""
        if self.block is None:
            self._failed_without_exception("the application returned without calling start_response()")
            self._finish_connection()
            return
        if not self.head_sent:
            self._single(b"")
            return
        if self.chunked:
            self._send(LAST_CHUNK)
        elif self.expected is not None and self.body_sent < self.expected and not self.no_body:
            log.error("%s: the application wrote %d of %d body bytes (Content-Length); closing the connection",
                      self._where(), self.body_sent, self.expected)
            self.close = True
        self._finish_connection()

    def _end_cut(self) -> None:
        """The response cannot be completed (an error, a gone peer, a reached length)."""
        if self.head_sent and self.expected is not None and self.body_sent >= self.expected and not self.close:
            self._finish_connection()  # all of Content-Length went out: the response is whole
            return
        self.close = True
        self._finish_connection()

    def _finish_connection(self) -> None:
        if self.close:
            channel = self.channel or self.handler.channels.get(self.session)
            if self.threaded:
                channel.close_from_thread()
            elif channel is not None:
                channel.close_when_done()
            else:
                self.handler.router.close(self.session, False)

    def _send_queued(self, data: bytes) -> None:
        """`_single`'s send when its direct write could not be the whole story: a channel holds
        output for the session, or the socket did not take it (then the error decides)."""
        if not self.threaded and self.channel is None and not self.handler.channels:
            code = current().last_error
            if code != ErrorCode.OUTPUT_BUFFER_OVERFLOW and code != ErrorCode.DATA_LENGTH_TOO_LARGE:
                return  # the peer is gone
            self.channel = self.handler.open_channel(self.session)
            self.channel.send(data)
            return
        self._send(data)

    def _send(self, data: bytes) -> bool:
        if self.threaded:
            return self.channel.send_from_thread(data)
        channel = self.channel
        if channel is None:
            channel = self.handler.channels.get(self.session)
            if channel is None or channel.idle:
                if self.handler.send(self.session, data):
                    return True
                code = current().last_error
                if code != ErrorCode.OUTPUT_BUFFER_OVERFLOW and code != ErrorCode.DATA_LENGTH_TOO_LARGE:
                    return False  # the peer is gone
                channel = self.handler.open_channel(self.session)
                self.channel = channel
                return channel.send(data)
            self.channel = channel
        return channel.send(data)

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        """Head + sendfile(2) for a regular file with a path; False: iterate it instead."""
        if self.block is None or self.head_sent or self.channel is not None or self.session in self.handler.channels:
            return False
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            path = os.fsdecode(filelike.name)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or (os.stat(path).st_ino, os.stat(path).st_dev) != (info.st_ino, info.st_dev):
                return False
            offset = filelike.tell()
        except (AttributeError, OSError, TypeError, ValueError):
            return False
        self.result = wrapper
        length = max(0, info.st_size - offset)
        expected = self.block.content_length
        framing = b""
        if expected is None:
            framing = b"Content-Length: %d\r\n" % length
        elif expected != length:
            length = min(length, expected)
            self.close = self.close or expected > length
        send_body = not (self.code < 200 or self.code in NO_BODY_STATUS or self.event.method == "HEAD")
        head = assemble(self.status_line, self.block, self.handler.clock(), framing + self._connection())
        self.head_sent = True
        if self._send(head) and send_body and length:
            if self.handler.router.sendfile(self.session, path, offset, length):
                self.body_sent = length
        self._finish_connection()
        self._close_result()
        return True

    # -- failures -----------------------------------------------------------------------------
    def _where(self) -> str:
        environ = self.environ or {}
        return f"{environ.get('REQUEST_METHOD', self.event.method)} {environ.get('RAW_URI', '?')}"

    def _failed(self, what: str) -> None:
        """Called inside an `except` block: log the traceback, answer 500 or cut the response."""
        log.exception("%s: %s", self._where(), what)
        self.handler.count_error(self.threaded)
        self._answer_error()

    def _failed_without_exception(self, what: str) -> None:
        log.error("%s: %s", self._where(), what)
        self.handler.count_error(self.threaded)
        self._answer_error()

    def _answer_error(self) -> None:
        if self.head_sent:
            self.close = True
            return
        self.code = 500
        self.head_sent = True
        self.close = True
        self._send(error_page(500, self.handler.clock()))
