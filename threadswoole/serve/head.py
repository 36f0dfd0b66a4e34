"""Response heads for WSGI and ASGI applications: checked headers in, HTTP/1.1 bytes out.

The application's headers are checked once and encoded into a `HeaderBlock` (the bytes, plus
the facts the server needs: Content-Length, whether Server/Date were given, Connection: close).
Both are cached per distinct header list, because applications answer with the same headers
again and again (a hello world sends one list forever; a framework a handful). Each worker
passes caches of its own (`HeadCaches`): on free-threaded CPython a cache that two worker
threads read at once serialises them (the dict's lock, taken for values another thread made,
and spun on with sched_yield: about 40 calls per request with two THREAD workers, see
docs/serve.md). The head is then status line + block + the server's own headers (Server,
Date, Connection, framing) + CRLF.

Hop-by-hop headers (RFC 9110 §7.6.1) are the server's business: ``Connection`` from the
application is not repeated (``close`` is honoured: the connection closes after the response;
other values are dropped); any other hop-by-hop header (Keep-Alive, Transfer-Encoding, Upgrade,
TE, Trailer, Proxy-Connection) is an application error (PEP 3333 forbids them; wsgiref raises
too) and becomes a 500.
"""

from __future__ import annotations

from typing import Any, Iterable

from threadswoole.protocol.http.writer import SERVER_NAME, date_bytes, reason_phrase

__all__ = ["HeaderError", "HeaderBlock", "HeadCaches", "wsgi_status", "wsgi_headers", "asgi_headers", "assemble", "error_page"]

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "trailers",
                        "transfer-encoding", "upgrade"})
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN_STR = frozenset(chr(c) for c in _TOKEN)
_SERVER = b"Server: " + SERVER_NAME.encode() + b"\r\n"
_CACHE_LIMIT = 512
_wsgi_cache: dict[Any, "HeaderBlock"] = {}
_asgi_cache: dict[Any, "HeaderBlock"] = {}
_status_cache: dict[str, tuple[int, bytes]] = {}
NO_BODY_STATUS = frozenset({204, 304})  # and every 1xx


class HeaderError(ValueError):
    """Headers or a status the server must not send (an application error: a 500)."""


class HeaderBlock:
    """Encoded application headers and what the server needs to know about them."""

    __slots__ = ("data", "content_length", "has_server", "has_date", "close", "prefix")

    def __init__(self, data: bytes, content_length: int | None, has_server: bool, has_date: bool, close: bool) -> None:
        self.data = data
        self.content_length = content_length
        self.has_server = has_server
        self.has_date = has_date
        self.close = close
        # (second, status line, status line + headers + Server + Date): the head's start, built
        # once per second and status (one tuple, replaced whole: safe to share between threads)
        self.prefix: tuple[int, bytes, bytes] = (-1, b"", b"")


class HeadCaches:
    """One worker's caches of checked statuses and header lists (see the module docstring)."""

    __slots__ = ("status", "wsgi", "asgi", "asgi_status")

    def __init__(self) -> None:
        self.status: dict[str, tuple[int, bytes]] = {}
        self.asgi_status: dict[int, bytes] = {}  # ASGI status code -> its status line
        self.wsgi: dict[Any, HeaderBlock] = {}
        self.asgi: dict[Any, HeaderBlock] = {}


def wsgi_status(status: Any, cache: dict[str, tuple[int, bytes]] = _status_cache) -> tuple[int, bytes]:
    """PEP 3333 status (``"200 OK"``) -> (200, b"HTTP/1.1 200 OK\\r\\n"); HeaderError if malformed."""
    known = cache.get(status)
    if known is not None:
        return known
    if type(status) is not str:
        raise HeaderError(f"status must be a str such as '200 OK', not {type(status).__name__}")
    code_text, _, reason = status.partition(" ")
    if len(code_text) != 3 or not code_text.isdigit() or not 100 <= int(code_text) <= 999:
        raise HeaderError(f"status {status[:40]!r} does not start with a three-digit code")
    if "\r" in status or "\n" in status or "\0" in status:
        raise HeaderError("status contains CR, LF or NUL")
    try:
        line = f"HTTP/1.1 {code_text} {reason or reason_phrase(int(code_text))}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise HeaderError("status is not latin-1 text (PEP 3333)") from None
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    known = cache[status] = (int(code_text), line)
    return known


def _content_length(value: str | bytes) -> int:
    text = value.strip()
    if not text.isdigit():
        raise HeaderError(f"Content-Length {value[:40]!r} is not a number")
    return int(text)


def _block(pairs: Iterable[tuple[str, str]], encoded: bytes, close: bool) -> HeaderBlock:
    """The facts of checked (lower-cased name, value) pairs, with their encoded bytes."""
    content_length = None
    has_server = has_date = False
    for name, value in pairs:
        if name == "content-length":
            if content_length is not None:
                raise HeaderError("Content-Length given twice")
            content_length = _content_length(value)
        elif name == "server":
            has_server = True
        elif name == "date":
            has_date = True
    return HeaderBlock(encoded, content_length, has_server, has_date, close)


def wsgi_headers(headers: Any, cache: dict[Any, HeaderBlock] = _wsgi_cache) -> HeaderBlock:
    """Check and encode PEP 3333 ``response_headers`` (a list of (str, str) tuples)."""
    if type(headers) is not list:
        raise HeaderError(f"response_headers must be a list, not {type(headers).__name__}")
    try:
        key = tuple(headers)
        known = cache.get(key)
    except TypeError:  # an unhashable item: let the checks below say what is wrong
        key, known = None, None
    if known is not None:
        return known
    lines = []
    pairs = []
    close = False
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise HeaderError(f"each header must be a (name, value) tuple, not {item!r:.60}")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise HeaderError(f"header names and values must be str (PEP 3333), got {item!r:.60}")
        if not name or not _TOKEN_STR.issuperset(name):
            raise HeaderError(f"header name {name[:40]!r} is not a token")
        if "\r" in value or "\n" in value or "\0" in value:
            raise HeaderError(f"header {name!r} has CR, LF or NUL in its value")
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == "connection":
                close = close or "close" in value.lower()
                continue
            raise HeaderError(f"hop-by-hop header {name!r} is the server's to set (PEP 3333)")
        pairs.append((lower, value))
        lines.append(f"{name}: {value}\r\n")
    try:
        encoded = "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise HeaderError("header values must be latin-1 text (PEP 3333)") from None
    block = _block(pairs, encoded, close)
    if key is not None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = block
    return block


def asgi_headers(headers: Any, cache: dict[Any, HeaderBlock] = _asgi_cache) -> HeaderBlock:
    """Check and encode ASGI response headers (an iterable of [bytes, bytes] pairs)."""
    try:
        key = tuple(headers)
        known = cache.get(key)  # (TypeError: [name, value] lists, not tuples)
    except TypeError:
        try:
            key = tuple(map(tuple, headers))
            known = cache.get(key)
        except TypeError:
            raise HeaderError("headers must be an iterable of [name, value] byte-string pairs") from None
    if known is not None:
        return known
    lines = []
    pairs = []
    close = False
    for item in key:
        if len(item) != 2:
            raise HeaderError(f"each header must be a [name, value] pair, not {item!r:.60}")
        name, value = item
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise HeaderError(f"header names and values must be bytes (ASGI), got {item!r:.60}")
        if not name or not _TOKEN.issuperset(name):
            raise HeaderError(f"header name {name[:40]!r} is not a token")
        if b"\r" in value or b"\n" in value or b"\0" in value:
            raise HeaderError(f"header {name!r} has CR, LF or NUL in its value")
        lower = name.lower().decode("latin-1")
        if lower in HOP_BY_HOP:
            if lower == "connection":
                close = close or b"close" in value.lower()
                continue
            raise HeaderError(f"hop-by-hop header {name!r} is the server's to set")
        pairs.append((lower, value.decode("latin-1")))
        lines.append(b"%s: %s\r\n" % (name, value))
    block = _block(pairs, b"".join(lines), close)
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = block
    return block


def assemble(status_line: bytes, block: HeaderBlock, now: float, framing: bytes) -> bytes:
    """The whole head: status line, the application's headers, the server's, `framing`
    (b"Content-Length: N\\r\\n", b"Transfer-Encoding: chunked\\r\\n", b"Connection: close\\r\\n", ...)."""
    second = int(now)
    cached = block.prefix
    if cached[0] == second and cached[1] is status_line:
        return cached[2] + framing + b"\r\n"
    parts = [status_line, block.data]
    if not block.has_server:
        parts.append(_SERVER)
    if not block.has_date:
        parts.append(b"Date: " + date_bytes(now) + b"\r\n")
    prefix = b"".join(parts)
    block.prefix = (second, status_line, prefix)
    return prefix + framing + b"\r\n"


def error_page(code: int, now: float, *, close: bool = True) -> bytes:
    """A complete plain-text answer (500 when an application fails, 503 while stopping)."""
    body = f"{code} {reason_phrase(code)}\n".encode("ascii")
    head = (f"HTTP/1.1 {code} {reason_phrase(code)}\r\nServer: {SERVER_NAME}\r\n").encode("ascii")
    head += b"Date: " + date_bytes(now) + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
    head += b"Content-Length: %d\r\n" % len(body)
    head += b"Connection: close\r\n\r\n" if close else b"\r\n"
    return head + body
