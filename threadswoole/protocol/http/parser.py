"""`HttpCodec`: the sans-IO HTTP/1.1 request parser, one per connection.

    codec = HttpCodec(max_body_size=settings["package_max_length"])
    for item in codec.feed(recv_bytes):
        ...  # HttpRequest / HttpBodyChunk events, Reply(b"HTTP/1.1 100 Continue...")

Fast path: a recv() that holds exactly one complete body-less request (a typical ``wrk`` or
browser GET) on an idle codec is parsed straight from the recv'd bytes, with no buffer and
no state change, into one `HttpRequest`. Everything else goes through a small state machine
over a bytearray buffer: head -> body (Content-Length or chunked) -> next request.

Bodies up to `max_buffered_body` bytes are held and delivered with their request as one
event. A longer body that has not fully arrived is streamed: an `HttpRequest(complete=False)`
with the bytes so far, then at most one `HttpBodyChunk` per `feed`, the last with `final`.

After a request that does not keep the connection alive, further bytes are ignored. After a
request with ``Upgrade`` + ``Connection: upgrade`` the codec stops parsing and holds what
follows until its owner calls `resume()` (upgrade refused: parse on as HTTP) or `detach()`
(upgrade accepted: the held bytes go to the next codec).

Invalid input raises `ProtocolError` whose `response` is a complete error answer with
``Connection: close`` (400; 501 for an unsupported transfer coding or CONNECT; 505 for
HTTP/2.0 and the like) and whose `events` are those completed before the bad bytes. The
rules are listed in `threadswoole.protocol.http.head`.

Micro-benchmark: ``python3 -m stress.micro_http`` (CPU time per call, best of 7 x 50000, on
this 2-core container while other test suites ran; compare rows of one run, not runs):

    floor: a method call returning [data] (what Codec.feed costs doing nothing)   89 ns   1.0x
    HttpCodec.feed(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"), seen before  812 ns   9.1x
    HeadParser.parse of that head, caches off (a never-seen head)               2927 ns  32.8x
    httptools.HttpRequestParser.feed_data, same head, Python callbacks [C]      508 ns   5.7x
    HttpCodec.feed(browser GET, 8 headers, ~420 bytes), seen before             1028 ns  11.5x
    HeadParser.parse of that head, caches off                                   7110 ns  79.7x
    HttpRequest.pack() + unpack() (PROCESS mode crossing)                       1510 ns  16.9x

"Seen before" is the common case on keep-alive connections (`HeadParser` caches whole heads
and header blocks, bounded); every event still gets its own headers dict.
"""

from __future__ import annotations

from typing import Any

from threadswoole.protocol.codec import Codec, ProtocolError, Reply
from threadswoole.protocol.http.chunked import ChunkedDecoder
from threadswoole.protocol.http.errors import MessageError
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.protocol.http.head import BARE_LINE_ENDING, HeadParser
from threadswoole.protocol.http.writer import CONTINUE, error_response

__all__ = ["HttpCodec"]

_HEAD, _LENGTH, _CHUNKED, _HOLD, _DONE, _FAILED = range(6)


class HttpCodec(Codec):
    """Per-connection HTTP/1.1 request parser (sans-IO); see the module docstring.

    Limits (keyword-only): `max_head_size` bytes of request line + headers + blank line
    (Swoole's fixed 8 KiB), `max_body_size` (``package_max_length``: a larger Content-Length is
    400 before any body is read, a chunked body growing past it is 400), `max_headers` fields,
    `max_chunk_extension` bytes of extensions per chunk-size line, `max_buffered_body` (longer
    bodies stream), `require_host` (HTTP/1.1 without Host is 400), `hold_upgrade` (False on a
    listener that never upgrades, e.g. a plain HTTP port: upgrade requests are flagged but
    parsing simply goes on, no `resume()` needed).
    """

    __slots__ = (
        "max_head_size", "max_body_size", "max_headers", "max_chunk_extension", "max_buffered_body",
        "require_host", "hold_upgrade", "_state", "_buf", "_request", "_remaining", "_streaming", "_chunked",
        "_parts", "_held", "_error", "_heads",
    )
    protocol = "http"

    def __init__(
        self,
        *,
        max_head_size: int = 8192,
        max_body_size: int = 2 * 1024 * 1024,
        max_headers: int = 100,
        max_chunk_extension: int = 1024,
        max_buffered_body: int = 64 * 1024,
        require_host: bool = True,
        hold_upgrade: bool = True,
    ) -> None:
        for name, value in (("max_head_size", max_head_size), ("max_body_size", max_body_size),
                            ("max_headers", max_headers), ("max_chunk_extension", max_chunk_extension),
                            ("max_buffered_body", max_buffered_body)):
            if type(value) is not int or value < 0 or (value == 0 and name == "max_head_size"):
                raise ValueError(f"{name} must be a non-negative int (max_head_size positive), got {value!r}")
        self.max_head_size = max_head_size
        self.max_body_size = max_body_size
        self.max_headers = max_headers
        self.max_chunk_extension = max_chunk_extension
        self.max_buffered_body = max_buffered_body
        self.require_host = require_host
        self.hold_upgrade = hold_upgrade
        self._state = _HEAD
        self._buf = bytearray()
        self._request: HttpRequest | None = None  # the request whose body is being read
        self._remaining = 0  # Content-Length bytes still to read
        self._streaming = False  # the current request was already delivered with complete=False
        self._chunked: ChunkedDecoder | None = None
        self._parts: list[bytes] = []  # body bytes held for the current request (not streaming)
        self._held = 0  # len(b"".join(self._parts))
        self._error: MessageError | None = None
        self._heads = HeadParser.shared(max_headers, max_body_size, require_host)

    # -- the contract ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Any]:
        if self._state == _HEAD and not self._buf and type(data) is bytes:
            # Fast path: exactly one complete head, nothing buffered. A head seen before is
            # known to be one (HeadParser.known): no scan for its end (bytes.find parses its
            # arguments from a tuple): about 1,450 instructions less per request (callgrind).
            request = self._heads.known(data) if len(data) <= self.max_head_size else None
            if request is None:
                end = data.find(b"\r\n\r\n")
                if end >= 0 and end + 4 == len(data) <= self.max_head_size and data[0] != 13:
                    try:
                        request = self._heads.parse(data)
                    except MessageError as err:
                        raise self._fail(err, []) from None
            if request is not None:
                if request.content_length == 0:
                    if request.upgrade and self.hold_upgrade:
                        self._state = _HOLD
                    elif not request.keep_alive:
                        self._state = _DONE
                    return [request]
                out: list[Any] = []
                self._start_body(request, data, len(data), out)
                return out
        return self._feed_slow(data)

    @property
    def buffered(self) -> int:
        return len(self._buf) + self._held

    def resume(self) -> list[Any]:
        """After an upgrade request: the upgrade was refused, parse the held bytes as HTTP.

        Returns what `feed` would return for them (and raises as `feed` does). A no-op
        returning [] when the codec is not holding.
        """
        if self._state != _HOLD:
            return []
        self._state = _HEAD
        held = bytes(self._buf)
        self._buf = bytearray()
        return self.feed(held) if held else []

    def detach(self) -> bytes:
        """Stop parsing for good; return the bytes received but not consumed (for the next codec)."""
        held = bytes(self._buf)
        self._buf = bytearray()
        self._parts = []
        self._held = 0
        self._state = _DONE
        return held

    @property
    def reading_head(self) -> bool:  # type: ignore[override]
        """True while part of a request head is buffered (see Codec.reading_head)."""
        return self._state == _HEAD and bool(self._buf)

    @property
    def holding(self) -> bool:
        """True after an upgrade request, until `resume()` or `detach()`."""
        return self._state == _HOLD

    @property
    def failed(self) -> bool:
        """True once `feed` has raised ProtocolError."""
        return self._state == _FAILED

    # -- the state machine --------------------------------------------------------------------------
    def _feed_slow(self, data: bytes) -> list[Any]:
        state = self._state
        if state == _DONE:
            return []
        if state == _FAILED:
            assert self._error is not None
            raise ProtocolError(self._error.reason, f"codec already failed ({self._error.detail})")
        if not data:
            return []
        buf = self._buf
        if state == _HOLD:
            buf += data
            return []
        if buf:
            scan_from = len(buf) - 1
            buf += data
            src: bytes | bytearray = buf
        else:
            scan_from = 0
            src = data if type(data) is bytes else bytes(data)
        out: list[Any] = []
        try:
            pos = self._run(src, scan_from, out)
        except MessageError as err:
            raise self._fail(err, out) from None
        if self._state == _DONE:
            pos = len(src)
        if src is buf:
            if pos == len(buf):
                self._buf = bytearray()
            elif pos:
                del buf[:pos]
        elif pos < len(src):
            self._buf = bytearray(memoryview(src)[pos:])
        return out

    def _run(self, src: bytes | bytearray, scan_from: int, out: list[Any]) -> int:
        """Consume `src` from 0; append events to `out`; return how far it got."""
        n = len(src)
        pos = 0
        while pos < n:
            state = self._state
            if state == _HEAD:
                while src.startswith(b"\r\n", pos):  # RFC 9112 §2.2: ignore empty lines before a request
                    pos += 2
                if pos >= n:
                    break
                end = src.find(b"\r\n\r\n", pos)
                if end < 0:
                    self._check_partial_head(src, pos, scan_from)
                    break
                if end + 4 - pos > self.max_head_size:
                    self._check_partial_head(src, pos, pos, too_large=True)
                head = src[pos:end + 4] if type(src) is bytes else bytes(src[pos:end + 4])
                request = self._heads.parse(head)
                pos = end + 4
                if request.content_length == 0:
                    out.append(request)
                    if self._after(request):
                        break
                    continue
                pos = self._start_body(request, src, pos, out)
            elif state == _LENGTH:
                pos = self._read_length(src, pos, out)
            elif state == _CHUNKED:
                pos = self._read_chunked(src, pos, out)
            else:  # _HOLD or _DONE
                break
            if self._state != _HEAD:
                break  # a body reader consumed all it could (waiting for more), or holding / done
        return pos

    def _after(self, request: HttpRequest) -> bool:
        """A request is complete: pick the next state; True when parsing must stop."""
        self._request = None
        self._streaming = False
        self._chunked = None
        if request.upgrade and self.hold_upgrade:
            self._state = _HOLD
            return True
        if not request.keep_alive:
            self._state = _DONE
            return True
        self._state = _HEAD
        return False

    def _start_body(self, request: HttpRequest, src: bytes | bytearray, pos: int, out: list[Any]) -> int:
        """The head announced a body starting at `src[pos]`; read what is there."""
        if request.expect_continue and pos == len(src):
            out.append(Reply(CONTINUE))  # the client waits for it before sending the body
        self._request = request
        self._streaming = False
        self._parts = []
        self._held = 0
        if request.content_length > 0:
            self._state = _LENGTH
            self._remaining = request.content_length
            return self._read_length(src, pos, out)
        self._state = _CHUNKED
        self._chunked = ChunkedDecoder(self.max_body_size, self.max_chunk_extension, self.max_head_size, self.max_headers)
        return self._read_chunked(src, pos, out)

    def _read_length(self, src: bytes | bytearray, pos: int, out: list[Any]) -> int:
        request = self._request
        assert request is not None
        remaining = self._remaining
        available = len(src) - pos
        if self._streaming:
            take = min(available, remaining)
            data = src[pos:pos + take] if type(src) is bytes else bytes(src[pos:pos + take])
            self._remaining = remaining = remaining - take
            out.append(HttpBodyChunk(data, remaining == 0))
            pos += take
            if remaining == 0:
                self._after(request)
            return pos
        if available >= remaining:
            request.body = src[pos:pos + remaining] if type(src) is bytes else bytes(src[pos:pos + remaining])
            out.append(request)
            self._after(request)
            return pos + remaining
        if remaining > self.max_buffered_body:
            # Too long to hold: deliver the head with the bytes so far, stream the rest.
            request.body = src[pos:] if type(src) is bytes else bytes(src[pos:])
            request.complete = False
            self._remaining = remaining - available
            self._streaming = True
            out.append(request)
            return len(src)
        return pos  # wait for the rest in the buffer (bounded by max_buffered_body)

    def _read_chunked(self, src: bytes | bytearray, pos: int, out: list[Any]) -> int:
        request = self._request
        decoder = self._chunked
        assert request is not None and decoder is not None
        parts: list[bytes] = []
        pos, finished = decoder.decode(src, pos, parts)
        if self._streaming:
            if parts or finished:
                out.append(HttpBodyChunk(b"".join(parts), finished, decoder.trailers))
        else:
            if parts:
                self._parts += parts
                self._held += sum(map(len, parts))
            parts = self._parts
            if finished:
                request.body = b"".join(parts)
                request.trailers = decoder.trailers
                self._parts = []
                self._held = 0
                out.append(request)
            elif self._held > self.max_buffered_body:
                request.body = b"".join(parts)
                request.complete = False
                self._parts = []
                self._held = 0
                self._streaming = True
                out.append(request)
        if finished:
            self._after(request)
        return pos

    def _check_partial_head(self, src: bytes | bytearray, pos: int, scan_from: int, *, too_large: bool = False) -> None:
        """A head not complete (or complete but too long): fail if it can no longer be valid.

        The error found at the lowest offset wins, so that the reason never depends on how the
        bytes were split: a bare CR/LF before the size limit, then the size limit itself.
        (Every other check needs the whole head; `HeadParser.parse` prefers a bare CR/LF too.)
        """
        limit = pos + self.max_head_size
        if src[pos] == 10 or BARE_LINE_ENDING.search(src, max(pos, scan_from), limit):
            raise MessageError(400, "bare_line_ending", "bare CR or LF in the request head")
        if too_large or len(src) >= limit:
            raise MessageError(400, "head_too_large", f"request head over {self.max_head_size} bytes")

    def _fail(self, err: MessageError, events: list[Any]) -> ProtocolError:
        self._state = _FAILED
        self._error = err
        self._buf = bytearray()
        self._parts = []
        self._held = 0
        self._request = None
        self._chunked = None
        return ProtocolError(err.reason, err.detail, response=error_response(err.status), events=events)

    def __repr__(self) -> str:
        names = ("head", "length-body", "chunked-body", "holding", "done", "failed")
        return f"<HttpCodec {names[self._state]} buffered={self.buffered}>"
