"""The events the HTTP/1.1 codec produces: a request head (with its body when small) and body chunks.

Both cross to PROCESS workers as `marshal` bytes of a tuple, so `pack`/`unpack` cost about a
microsecond and parse nothing again.
"""

from __future__ import annotations

import marshal
from typing import Any

from threadswoole.protocol.codec import Event, register_event

__all__ = ["HttpRequest", "HttpBodyChunk"]

# marshal format 2: no back-references, so neither side builds a reference table per event
# (dumps 690 -> 557 ns, loads 559 -> 468 ns for a small GET: python3 -m timeit); the values
# of an event (str, bytes, int, bool, None, dict) round-trip the same in every format.
WIRE_FORMAT = 2
_new_object = object.__new__


@register_event
class HttpRequest(Event):
    """One HTTP request: its head, and its whole body when `complete`.

    * `method` ("GET"), `target` (the raw request-target, e.g. "/a%20b?x=1"), `path` ("/a%20b",
      not percent-decoded; for an absolute-form target the path part of the URL), `query`
      ("x=1", "" when absent), `version` ("1.0" or "1.1").
    * `headers`: lower-cased name -> value (latin-1 decoded, surrounding blanks stripped);
      a repeated header's values are joined with ", " (``cookie`` with "; ").
    * `head`: the raw bytes of the request line and headers, up to and including the blank line.
    * `body`: the body (de-chunked). When `complete` is False the body is still arriving: this
      holds its first bytes and `HttpBodyChunk` events bring the rest, the last with `final`.
    * `content_length`: the announced length, -1 for a chunked body, 0 for none.
    * `keep_alive`: the connection stays open after the response (HTTP/1.1 unless
      ``Connection: close``; HTTP/1.0 only with ``Connection: keep-alive``).
    * `expect_continue`: the client sent ``Expect: 100-continue`` (the codec already answered).
    * `upgrade`: ``Upgrade`` + ``Connection: upgrade`` (HTTP/1.1): the codec holds the bytes
      that follow until its owner calls `HttpCodec.resume()` or `HttpCodec.detach()`.
    * `trailers`: the trailer fields of a complete chunked body, or None.
    """

    __slots__ = (
        "method", "target", "path", "query", "version", "headers", "head", "body",
        "keep_alive", "complete", "expect_continue", "upgrade", "content_length", "trailers",
    )
    wire_id = 1

    # (HeadParser.parse and `unpack` fill the slots of a new instance themselves, without this
    # __init__: a field added here must be set there too.)
    def __init__(
        self,
        method: str,
        target: str,
        path: str,
        query: str,
        version: str,
        headers: dict[str, str],
        head: bytes,
        body: bytes = b"",
        keep_alive: bool = True,
        complete: bool = True,
        expect_continue: bool = False,
        upgrade: bool = False,
        content_length: int = 0,
        trailers: dict[str, str] | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.head = head
        self.body = body
        self.keep_alive = keep_alive
        self.complete = complete
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.content_length = content_length
        self.trailers = trailers

    @property
    def chunked(self) -> bool:
        """True when the body came with ``Transfer-Encoding: chunked``."""
        return self.content_length < 0

    def pack(self) -> bytes:
        return marshal.dumps((
            self.method, self.target, self.path, self.query, self.version, self.headers, self.head,
            self.body, self.keep_alive, self.complete, self.expect_continue, self.upgrade,
            self.content_length, self.trailers,
        ), WIRE_FORMAT)

    @classmethod
    def unpack(cls, data: bytes) -> "HttpRequest":
        # the slots filled straight from the tuple, without a call of __init__ (about 1,000
        # instructions less per request in a PROCESS worker: callgrind, cgprocess.sh)
        self = _new_object(cls)
        (self.method, self.target, self.path, self.query, self.version, self.headers, self.head,
         self.body, self.keep_alive, self.complete, self.expect_continue, self.upgrade,
         self.content_length, self.trailers) = marshal.loads(data)
        return self

    def __eq__(self, other: Any) -> bool:
        if type(other) is not HttpRequest:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "" if self.complete else ", complete=False"
        return (f"HttpRequest({self.method} {self.target} HTTP/{self.version}, {len(self.headers)} headers, "
                f"body={len(self.body)} bytes{state})")


@register_event
class HttpBodyChunk(Event):
    """More body of the last `HttpRequest(complete=False)`; `final` marks the end of that body.

    `trailers` is set on the final chunk of a chunked body that had trailer fields.
    """

    __slots__ = ("data", "final", "trailers")
    wire_id = 2
    continues_message = True  # it belongs to the worker that has the request's head

    def __init__(self, data: bytes, final: bool = False, trailers: dict[str, str] | None = None) -> None:
        self.data = data
        self.final = final
        self.trailers = trailers

    def pack(self) -> bytes:
        return marshal.dumps((self.data, self.final, self.trailers), WIRE_FORMAT)

    @classmethod
    def unpack(cls, data: bytes) -> "HttpBodyChunk":
        return cls(*marshal.loads(data))

    def __eq__(self, other: Any) -> bool:
        if type(other) is not HttpBodyChunk:
            return NotImplemented
        return (self.data, self.final, self.trailers) == (other.data, other.final, other.trailers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HttpBodyChunk({len(self.data)} bytes, final={self.final})"
