"""The writer half of HTTP/1.1: pure functions from status, headers and body to bytes.

Used by `threadswoole.http.Response`, by the static-file handler and by the codec for its
error answers. Nothing here reads a clock: the `Date` value is computed from the time the
caller passes in, and cached for the second it belongs to.
"""

from __future__ import annotations

from email.utils import formatdate
from http import HTTPStatus
from typing import Iterable

__all__ = [
    "SERVER_NAME", "CONTINUE", "LAST_CHUNK", "STATUS_LINES",
    "is_known_status", "reason_phrase", "status_line", "http_date", "date_value", "date_bytes", "plain_response",
    "encode_headers", "response_head", "chunk", "error_response",
]

#: Value of the ``Server`` header when the application sets none.
SERVER_NAME = "threadswoole"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"

#: status code -> b"HTTP/1.1 200 OK\r\n", for every code `http.HTTPStatus` knows.
STATUS_LINES: dict[int, bytes] = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("ascii") for status in HTTPStatus
}
_PHRASES: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}


def is_known_status(code: int) -> bool:
    """True when `code` is a status `http.HTTPStatus` defines (Response.status accepts only these)."""
    return code in _PHRASES


def reason_phrase(code: int) -> str:
    """The standard reason phrase of `code` ("Not Found"); "Unknown" for other codes."""
    return _PHRASES.get(code, "Unknown")


def status_line(code: int, reason: str = "") -> bytes:
    """``HTTP/1.1 <code> <reason>\\r\\n``; the standard phrase unless `reason` is given."""
    if not reason:
        line = STATUS_LINES.get(code)
        if line is not None:
            return line
        reason = reason_phrase(code)
    return f"HTTP/1.1 {code} {reason}\r\n".encode("latin-1", "replace")


def http_date(timestamp: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for a Unix time."""
    return formatdate(timestamp, usegmt=True)


_date_cache: tuple[int, str, bytes] = (-1, "", b"")


def _date_entry(now: float) -> tuple[int, str, bytes]:
    global _date_cache
    second = int(now)
    cached = _date_cache
    if cached[0] != second:
        value = formatdate(second, usegmt=True)
        cached = _date_cache = (second, value, value.encode("ascii"))
    return cached


def date_value(now: float) -> str:
    """The ``Date`` header value for `now`, computed once per second (a one-entry cache).

    The cache is a tuple replaced in one assignment, so concurrent callers (THREAD mode,
    free-threaded builds) see either the old or the new entry, never a mix.
    """
    return _date_entry(now)[1]


def date_bytes(now: float) -> bytes:
    """`date_value` as ASCII bytes (same cache)."""
    return _date_entry(now)[2]


# (second, keep-alive heads by length, close heads by length); replaced whole each second
_plain_cache: tuple[int, dict[int, bytes], dict[int, bytes]] = (-1, {}, {})
PLAIN_LENGTHS_KEPT = 64  # distinct body lengths kept per second and connection kind


def plain_response(now: float, keep_alive: bool, length: int, body: bytes = b"") -> bytes:
    """The commonest answer: 200, Swoole's default headers, ``Content-Length: length``, then
    `body` (b"" for the head alone: a HEAD request, whose `length` is the body it would get).

    Whole heads are kept for the second they belong to (the Date changes), by length: the
    hot path of ``Response.end()`` is a dict lookup and one concatenation. (Against one
    ``%s%d...%s`` format per response this is about 400 instructions less: the format parses
    its template, prints the number and resizes its result; callgrind, cghttp.sh.)
    """
    global _plain_cache
    cached = _plain_cache
    second = int(now)
    if cached[0] != second:
        cached = _plain_cache = (second, {}, {})
    heads = cached[1] if keep_alive else cached[2]
    head = heads.get(length)
    if head is None:
        head = _plain_head(second, keep_alive, length)
        if len(heads) >= PLAIN_LENGTHS_KEPT:
            heads.clear()
        heads[length] = head
    return head + body if body else head


def _plain_head(second: int, keep_alive: bool, length: int) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (b"HTTP/1.1 200 OK\r\nServer: %s\r\nDate: %s\r\nConnection: %s\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\n\r\n" % (SERVER_NAME.encode(), _date_entry(second)[2], connection, length))


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """``Name: value\\r\\n`` lines; str values are latin-1 (UTF-8 for a value latin-1 can't hold).

    latin-1 mirrors the parser, which decodes request headers as latin-1, so a header value
    echoed back goes out as the same bytes. Callers validate names and values (no CR/LF).
    """
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return b"".join(_encode_value(f"{name}: {value}\r\n") for name, value in headers)


def _encode_value(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


def response_head(code: int, headers: Iterable[tuple[str, str]], reason: str = "") -> bytes:
    """Status line, header lines and the blank line that ends a response head."""
    return status_line(code, reason) + encode_headers(headers) + b"\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``<hex length>\\r\\n<data>\\r\\n``); never call it with b""."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_ERROR_CACHE: dict[int, bytes] = {}


def error_response(status: int) -> bytes:
    """A complete plain-text error answer that closes the connection (the codec's 400/501/505).

    The body names the status only: echoing the offending input back would hand an
    attacker a reflection primitive for no benefit.
    """
    cached = _ERROR_CACHE.get(status)
    if cached is not None:
        return cached
    body = f"{status} {reason_phrase(status)}\n".encode("ascii")
    response = response_head(status, [
        ("Server", SERVER_NAME),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]) + body
    _ERROR_CACHE[status] = response
    return response
