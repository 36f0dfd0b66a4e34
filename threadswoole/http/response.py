"""`Response`: the Swoole ``Http\\Response`` object, written against a `Transport`.

State: OPEN (headers may be set) -> WRITING (after the first ``write``: head sent, chunked)
-> ENDED; or DETACHED (the application answers by other means). Every rule of api.md §8:

* ``header``/``cookie``/``status`` after the head went out return False (error 7106);
  a bad header key (CR/LF, ``_``, non-ASCII, any non-token character) is ValueError.
  Setting a key again replaces it (case-insensitively).
* ``write`` sends the head with ``Transfer-Encoding: chunked`` (HTTP/1.0: a raw body and
  ``Connection: close``), then one chunk per call; a chunk over ``buffer_output_size`` is
  False + 1202; ``end()`` after it sends the last chunk, ``end(b"x")`` after it is ValueError.
* ``end(data)`` sends head and body in one `Transport.send`; the second ``end`` is False.
  The connection is closed afterwards unless the request was keep-alive (and the
  application did not set ``Connection: close``).
* ``sendfile`` checks the file first (missing / unreadable / a directory: False + errno),
  is StateError after ``write``, sends ``Content-Length`` and no guessed Content-Type.
* HEAD requests get the head only, with the ``Content-Length`` the body would have had.
  1xx, 204 and 304 responses carry neither body nor ``Content-Length``.
* Compression: ``gzip(level)`` (StateError after ``write``/``end``) compresses with the coding
  the client accepts (gzip preferred); ``http_compression`` does the same automatically for
  ``end()`` bodies of at least ``compression_min_length`` bytes when the client sent
  ``Accept-Encoding`` and the application set no ``Content-Encoding``. Not for ``sendfile``.

Defaults as in Swoole: ``Server``, ``Date``, ``Connection``, ``Content-Type: text/html``
(``end``/``write`` only) unless the application set them. ``Content-Length`` and
``Transfer-Encoding`` are always computed (an application value is ignored, except a
``Content-Length`` on a HEAD response with no body).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import Any

from threadswoole._aliases import alias
from threadswoole._context import set_error
from threadswoole.errors import ErrorCode, StateError
from threadswoole.http.compression import StreamCompressor, choose_encoding, compress
from threadswoole.http.cookies import format_set_cookie
from threadswoole.http.options import HttpOptions
from threadswoole.http.session import detached_request, remember_detached, transport_for
from threadswoole.http.transport import Transport
from threadswoole.protocol.http.writer import (
    LAST_CHUNK, SERVER_NAME, chunk, date_value, encode_headers, is_known_status, plain_response, status_line,
)

__all__ = ["Response", "Data"]

Data = Any  # bytes | bytearray | memoryview | str
_OPEN, _WRITING, _ENDED, _DETACHED = range(4)
_DEFAULT_OPTIONS = HttpOptions()
_TOKEN_CHARS = frozenset("!#$%&'*+-.^`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MANAGED = frozenset({"content-length", "transfer-encoding"})  # framing is ours
_NO_HEADERS: dict = {}  # shared, never written: a Response without headers allocates nothing
_NO_COOKIES: list = []
_new_object = object.__new__  # (cls.__new__ looks the name up on the class each time)


def _as_bytes(data: Data) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"response data must be bytes, bytearray, memoryview or str, not {type(data).__name__}")


def _header_name(key: Any, ucwords: bool) -> str:
    if not isinstance(key, str):
        raise TypeError(f"header key must be str, not {type(key).__name__}")
    if not key:
        raise ValueError("header key must not be empty")
    if not _TOKEN_CHARS.issuperset(key):
        bad = "".join(sorted(set(key) - _TOKEN_CHARS))
        raise ValueError(f"header key {key[:60]!r} contains {bad!r} (CR/LF, '_', non-ASCII and separators are not allowed)")
    if ucwords:
        return "-".join(word[:1].upper() + word[1:].lower() for word in key.split("-"))
    return key


def _header_value(value: Any) -> str:
    if value is None:
        raise TypeError("header value is required (got None)")
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"header value must be str, bytes or a number, not {type(value).__name__}")
    else:
        value = str(value)
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"header value {value[:60]!r} contains CR, LF or NUL")
    return value


class Response:
    """One HTTP response (see the module docstring); built by the server for each request.

    `transport` carries the bytes; `method`, `version`, `keep_alive` and `accept_encoding`
    are the facts of the request being answered; `options` the listener's HttpOptions.
    """

    # What every response sets lives in slots; what only some set (a status, headers, cookies,
    # gzip, a chunked stream) lives in the instance dict, defaulting to the class attributes
    # below, so that creating the common response stores 9 fields, not 16.
    __slots__ = ("fd", "_transport", "_method", "_version", "_keep_alive", "_accept_encoding",
                 "_options", "_state", "_plain", "__dict__")
    _status = 200
    _reason = ""
    _headers: dict[str, tuple[str, str]] = _NO_HEADERS  # lower-cased key -> (key as sent, value)
    _cookies: list[str] = _NO_COOKIES
    _gzip_level = 0
    _stream: "StreamCompressor | None" = None
    _raw_stream = False  # HTTP/1.0 write(): body bytes without chunk framing

    def __init__(self, transport: Transport, fd: int = 0, *, method: str = "GET", version: str = "1.1",
                 keep_alive: bool = True, accept_encoding: str | None = None,
                 options: HttpOptions | None = None) -> None:
        self.fd = fd
        self._transport = transport
        self._method = method
        self._version = version
        self._keep_alive = keep_alive
        self._accept_encoding = accept_encoding
        self._options = options or _DEFAULT_OPTIONS
        self._state = _OPEN
        self._plain = True  # nothing set yet: end() can take the fast path

    @classmethod
    def of_event(cls, transport: Transport, fd: int, event: Any, options: HttpOptions) -> "Response":
        """The server's constructor: Response(transport, fd, method=..., ...) with the facts
        read from the request's event, for the per-request path."""
        self = _new_object(cls)
        self.fd = fd
        self._transport = transport
        self._method = event.method
        self._version = event.version
        self._keep_alive = event.keep_alive
        self._accept_encoding = event.headers.get("accept-encoding")
        self._options = options
        self._state = _OPEN
        self._plain = True
        return self

    @classmethod
    def for_request(cls, transport: Transport, request: Any, options: HttpOptions | None = None) -> "Response":
        """The Response for a `threadswoole.http.Request` (or an HttpRequest event + fd 0).

        `options` default to the Request's own.
        """
        event = getattr(request, "event", request)
        return cls(transport, getattr(request, "fd", 0), method=event.method, version=event.version,
                   keep_alive=event.keep_alive, accept_encoding=event.headers.get("accept-encoding"),
                   options=options or getattr(request, "options", None))

    @classmethod
    def create(cls, fd: int) -> "Response | bool":
        """Swoole's ``Response::create($fd)``: a Response for a live HTTP connection, from any
        worker of a running server (a task worker answering a detached request, say); False
        (last error 1005) when `fd` is not one. It answers the request last detached on that
        connection as that request asked (HEAD: no body; HTTP/1.0 or close: then closes)."""
        found = transport_for(fd)
        if found is False:
            return False
        transport, port = found
        return cls(transport, fd, options=port.protocol.options, **detached_request(transport.router.state, fd))

    # -- state -----------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        """True once the response is complete (end, redirect, sendfile, or a failed send)."""
        return self._state == _ENDED

    @property
    def detached(self) -> bool:
        return self._state == _DETACHED

    @property
    def header_sent(self) -> bool:
        """True once the head is on its way (after write, end or sendfile)."""
        return self._state in (_WRITING, _ENDED)

    def _unavailable(self) -> bool:
        return set_error(ErrorCode.HTTP_CONTEXT_UNAVAILABLE)

    # -- head --------------------------------------------------------------------------------
    def header(self, key: str, value: str, ucwords: bool = True) -> bool:
        """Set a response header (replacing an earlier value for the same key)."""
        name = _header_name(key, ucwords)
        text = _header_value(value)
        if self._state != _OPEN:
            return self._unavailable()
        if self._headers is _NO_HEADERS:
            self._headers = {}
        self._headers[name.lower()] = (name, text)
        self._plain = False
        return True

    def cookie(self, key: str, value: str = "", expire: int = 0, path: str = "/", domain: str = "",
               secure: bool = False, httponly: bool = False) -> bool:
        """Add a ``Set-Cookie`` header; the value is percent-encoded. Several with one key are allowed."""
        line = format_set_cookie(key, value, expire, path, domain, secure, httponly, encode=True)
        return self._add_cookie(line)

    def raw_cookie(self, key: str, value: str = "", expire: int = 0, path: str = "/", domain: str = "",
                   secure: bool = False, httponly: bool = False) -> bool:
        """`cookie` without percent-encoding (the value may then not contain ``,; \\t\\r\\n``)."""
        line = format_set_cookie(key, value, expire, path, domain, secure, httponly, encode=False)
        return self._add_cookie(line)

    def _add_cookie(self, line: str) -> bool:
        if self._state != _OPEN:
            return self._unavailable()
        if self._cookies is _NO_COOKIES:
            self._cookies = []
        self._cookies.append(line)
        self._plain = False
        return True

    rawcookie = alias("raw_cookie")
    rawCookie = alias("raw_cookie")

    def status(self, http_status_code: int, reason: str = "") -> bool:
        """Set the status code (one `http.HTTPStatus` knows; ValueError otherwise)."""
        if isinstance(http_status_code, bool) or not isinstance(http_status_code, int):
            raise TypeError(f"status code must be int, not {type(http_status_code).__name__}")
        if not is_known_status(http_status_code):
            raise ValueError(f"unknown HTTP status code {http_status_code}")
        if "\r" in reason or "\n" in reason:
            raise ValueError("status reason contains CR or LF")
        if self._state != _OPEN:
            return self._unavailable()
        self._status = http_status_code
        self._reason = reason
        self._plain = http_status_code == 200 and not reason and self._plain
        return True

    def gzip(self, level: int = 1) -> bool:
        """Compress the body (gzip, or deflate if that is all the client takes) at `level` 1..9."""
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"gzip level must be int, not {type(level).__name__}")
        if not 1 <= level <= 9:
            raise ValueError(f"gzip level must be 1..9, got {level}")
        if self._state != _OPEN:
            raise StateError("gzip() must be called before write() / end()")
        self._gzip_level = level
        self._plain = False
        return True

    def redirect(self, url: str, http_code: int = 302) -> bool:
        """Send ``Location: url`` with `http_code` and end the response."""
        if self._state != _OPEN:
            return self._unavailable()
        self.status(http_code)
        self.header("Location", url)
        return self.end()

    def _build_head(self, content_length: int | None, encoding: str | None, default_type: bool) -> bytes:
        headers = self._headers
        lines = [pair for key, pair in headers.items() if key not in _MANAGED]
        lines += [("Set-Cookie", line) for line in self._cookies]
        if "server" not in headers:
            lines.append(("Server", SERVER_NAME))
        if "date" not in headers:
            lines.append(("Date", date_value(time.time())))
        if "connection" not in headers:
            lines.append(("Connection", "keep-alive" if self._keep_alive else "close"))
        if default_type and "content-type" not in headers:
            lines.append(("Content-Type", "text/html"))
        if encoding is not None:
            lines.append(("Content-Encoding", encoding))
            if "vary" not in headers:
                lines.append(("Vary", "Accept-Encoding"))
        if content_length is None:
            if not self._raw_stream:
                lines.append(("Transfer-Encoding", "chunked"))
        else:
            lines.append(("Content-Length", str(content_length)))
        return status_line(self._status, self._reason) + encode_headers(lines) + b"\r\n"

    def _note_connection(self) -> None:
        value = self._headers.get("connection")
        if value is not None and "close" in value[1].lower():
            self._keep_alive = False

    def _bodyless(self) -> bool:
        status = self._status
        return status < 200 or status in (204, 304)

    def _encoding_for(self, length: int) -> str | None:
        if self._bodyless() or "content-encoding" in self._headers:
            return None
        if self._gzip_level:
            return choose_encoding(self._accept_encoding, absent_means_any=True)
        options = self._options
        if options.http_compression and length >= options.compression_min_length:
            return choose_encoding(self._accept_encoding)
        return None

    # -- body --------------------------------------------------------------------------------
    def write(self, data: Data) -> bool:
        """Send `data` as one chunk (the first call sends the head, ``Transfer-Encoding: chunked``)."""
        data = _as_bytes(data)
        state = self._state
        if state == _ENDED or state == _DETACHED:
            return self._unavailable()
        if len(data) > self._options.buffer_output_size:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        out = b""
        if state == _OPEN:
            self._note_connection()
            if self._version == "1.0":
                self._raw_stream = True
                self._keep_alive = False  # the end of the body is the end of the connection
            encoding = None
            if self._gzip_level and not self._bodyless() and "content-encoding" not in self._headers:
                encoding = choose_encoding(self._accept_encoding, absent_means_any=True)
                if encoding is not None:
                    self._stream = StreamCompressor(encoding, self._gzip_level)
            out = self._build_head(None, encoding, True)
            self._state = _WRITING
        if self._method != "HEAD" and not self._bodyless():
            if self._stream is not None and data:
                data = self._stream.compress(data)
            if data:
                out += data if self._raw_stream else chunk(data)
        if not out:
            return True
        if not self._transport.send(out):
            # The client holds part of a body it can never complete: end the connection so it
            # sees the failure rather than waiting for the rest.
            self._state = _ENDED
            self._transport.close()
            return False
        return True

    def end(self, data: Data = b"") -> bool:
        """Send the body (or, after ``write``, the last chunk) and finish the response."""
        if type(data) is not bytes:
            data = _as_bytes(data)
        state = self._state
        if state == _OPEN and self._plain:
            # The commonest answer first: a plain 200 text/html (no header, cookie, status or
            # gzip set) that needs no compression; it is one cached format (plain_response).
            options = self._options
            size = len(data)
            if size <= options.buffer_output_size and (self._accept_encoding is None or size < options.compression_min_length or not options.http_compression):
                self._state = _ENDED
                keep_alive = self._keep_alive
                ok = self._transport.send(plain_response(time.time(), keep_alive, size, b"" if self._method == "HEAD" else data))
                if not ok or not keep_alive:
                    self._transport.close()  # a response that did not go out whole ends the connection
                return ok
        if state == _ENDED or state == _DETACHED:
            return self._unavailable()
        if state == _WRITING:
            if data:
                raise ValueError("end() after write() takes no data: write() it, then call end()")
            out = b""
            if self._method != "HEAD" and not self._bodyless():
                tail = self._stream.finish() if self._stream is not None else b""
                if self._raw_stream:
                    out = tail
                else:
                    out = (chunk(tail) if tail else b"") + LAST_CHUNK
            return self._finish(out)
        if len(data) > self._options.buffer_output_size:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        self._note_connection()
        if self._bodyless():
            return self._finish(self._build_head_without_length())
        encoding = self._encoding_for(len(data))
        if encoding is not None:
            data = compress(data, encoding, self._gzip_level or self._options.http_compression_level)
        if self._method == "HEAD":
            length = len(data)
            if not length and "content-length" in self._headers:
                given = self._headers["content-length"][1]
                length = int(given) if given.isdigit() else 0
            return self._finish(self._build_head(length, encoding, True))
        return self._finish(self._build_head(len(data), encoding, True) + data)

    def _build_head_without_length(self) -> bytes:
        lines = [pair for key, pair in self._headers.items() if key not in _MANAGED]
        lines += [("Set-Cookie", line) for line in self._cookies]
        if "server" not in self._headers:
            lines.append(("Server", SERVER_NAME))
        if "date" not in self._headers:
            lines.append(("Date", date_value(time.time())))
        if "connection" not in self._headers:
            lines.append(("Connection", "keep-alive" if self._keep_alive else "close"))
        return status_line(self._status, self._reason) + encode_headers(lines) + b"\r\n"

    def _finish(self, out: bytes) -> bool:
        self._state = _ENDED
        ok = self._transport.send(out) if out else True
        if not ok or not self._keep_alive:
            self._transport.close()  # a response that did not go out whole ends the connection
        return ok

    def sendfile(self, filename: str | os.PathLike, offset: int = 0, length: int = 0) -> bool:
        """Send (part of) a file as the whole body and end the response."""
        path = os.fspath(filename)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        for name, value in (("offset", offset), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"sendfile {name} must be int, not {type(value).__name__}")
            if value < 0:
                raise ValueError(f"sendfile {name} must be >= 0, got {value}")
        if self._state == _WRITING:
            raise StateError("sendfile() can not follow write()")
        if self._state != _OPEN:
            return self._unavailable()
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                return set_error(errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL)
            with open(path, "rb"):
                pass  # readable by us (the transport opens it again to send it)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)
        size = info.st_size
        if offset > size:
            return set_error(errno.EINVAL)
        if length == 0:
            length = size - offset
        elif offset + length > size:
            return set_error(errno.EINVAL)
        self._note_connection()
        head = self._build_head(length, None, False)
        self._state = _ENDED
        ok = self._transport.send(head)
        if ok and length and self._method != "HEAD":
            ok = self._transport.sendfile(path, offset, length)
        if not ok or not self._keep_alive:
            self._transport.close()  # a response that did not go out whole ends the connection
        return ok

    def detach(self) -> bool:
        """Give the connection up: no auto-end; the application answers by other means."""
        if self._state == _ENDED or self._state == _DETACHED:
            return self._unavailable()
        self._state = _DETACHED
        if self.fd > 0:
            remember_detached(self.fd, self._method, self._version, self._keep_alive)
        return True

    def finish_if_open(self) -> bool:
        """The server's auto-end when the handler returned: ``end()`` unless ended or detached.

        Returns True when it ended the response here.
        """
        if self._state == _OPEN or self._state == _WRITING:
            self.end()
            return True
        return False

    def conclude(self, request: Any) -> None:
        """The server's close of one request after the handler returned: the auto-end unless
        ended or detached, and the request's upload files deleted unless the response was
        detached (the application still holds the request; its finaliser deletes them)."""
        state = self._state
        if state != _ENDED:  # (the common case first: the handler ended it)
            if state == _DETACHED:
                return
            self.end()  # open or writing
        request.cleanup()

    def fail_if_open(self) -> None:
        """The server's answer when the handler raised: 500 if nothing was sent yet; after a
        write() the body can not be completed, so the connection is closed (as uvicorn does)."""
        if self._state == _OPEN:
            self.__dict__.clear()  # whatever the handler set before it raised (status, headers, cookies)
            self._status = 500
            self._plain = False
            self._keep_alive = False  # the application's state for this client is unknown
            self.header("Content-Type", "text/plain")
            self.end(b"Internal Server Error")
        elif self._state == _WRITING:
            self._state = _ENDED
            self._transport.close()

    def __repr__(self) -> str:
        names = ("open", "writing", "ended", "detached")
        return f"<Response fd={self.fd} {self._status} {names[self._state]}>"
