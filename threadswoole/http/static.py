"""`StaticFiles`: ``enable_static_handler`` -- answer GET/HEAD from ``document_root`` directly.

``serve(event, transport)`` returns True when it answered (``on_request`` is then not called)
and False when the request is not for a static file (the application gets it).

Path safety (**[decision]** stricter than Swoole): the URL path is percent-decoded; a NUL or a
``..`` segment (also ``%2e%2e``) is never served; the file is looked up below the root and its
real path (after every symlink) must still be inside the real root -- a symlink that leads out
is not followed. Such requests fall through to ``on_request``, like a missing file.

Answers: ``Last-Modified``; ``If-Modified-Since`` not older than the file -> 304; ``Range:
bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> 206 with ``Content-Range`` (an unsatisfiable
range -> 416 ``bytes */size``; several ranges, a malformed one, or an ``If-Range`` that does
not match -> the whole file, 200); ``Content-Type`` from `mimetypes`; a directory tries
``http_index_files`` in order, then lists itself when ``http_autoindex`` (names HTML-escaped,
links percent-encoded), else falls through.
"""

from __future__ import annotations

import html
import mimetypes
import os
import stat
import time
from email.utils import parsedate_to_datetime
from typing import Iterable
from urllib.parse import quote, unquote_to_bytes

from threadswoole.http.options import HttpOptions
from threadswoole.http.transport import Transport
from threadswoole.protocol.http.events import HttpRequest
from threadswoole.protocol.http.writer import SERVER_NAME, date_value, encode_headers, http_date, status_line

__all__ = ["StaticFiles", "parse_range"]


def parse_range(value: str, size: int) -> tuple[int, int] | None | bool:
    """A ``Range`` header for a file of `size` bytes -> (first, last) inclusive, None (ignore the
    header: malformed or several ranges) or False (unsatisfiable: 416)."""
    unit, eq, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or not eq or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text or last_text):
        return None
    for text in (first_text, last_text):
        if text and not (text.isdigit() and text.isascii()):
            return None
    if not first_text:  # bytes=-n: the last n bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # syntactically invalid (RFC 9110 14.1.1): ignore the header
    if first >= size:
        return False
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)


class StaticFiles:
    """Serves files below `document_root` (see the module docstring)."""

    __slots__ = ("root", "locations", "index_files", "autoindex")

    def __init__(self, document_root: str | os.PathLike, *, locations: Iterable[str] = (),
                 index_files: Iterable[str] = (), autoindex: bool = False) -> None:
        self.root = os.path.realpath(os.fspath(document_root))
        self.locations = tuple("/" + location.strip("/") for location in locations)
        self.index_files = tuple(index_files)
        self.autoindex = autoindex

    @classmethod
    def from_options(cls, options: HttpOptions) -> "StaticFiles | None":
        """The handler the settings ask for, or None (static handling off or no document_root)."""
        if not options.enable_static_handler or not options.document_root:
            return None
        return cls(options.document_root, locations=options.static_handler_locations,
                   index_files=options.http_index_files, autoindex=options.http_autoindex)

    # -- path resolution ------------------------------------------------------------------------
    def resolve(self, url_path: str) -> str | None:
        """The real filesystem path (file or directory) for a URL path, or None (never served).

        A path ending in ``/`` names a directory: ``/a.txt/`` is not the file ``a.txt`` (as
        for Apache and nginx; otherwise every relative link on the page resolves below it)."""
        raw = unquote_to_bytes(url_path)
        if b"\0" in raw:
            return None
        segments = []
        for segment in os.fsdecode(raw).split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                return None
            segments.append(segment)
        normalized = "/" + "/".join(segments)
        if self.locations and not any(normalized == loc or normalized.startswith(loc.rstrip("/") + "/")
                                      for loc in self.locations):
            return None
        real = self._inside(os.path.join(self.root, *segments))
        if real is not None and raw.endswith(b"/") and not os.path.isdir(real):
            return None
        return real

    def _inside(self, path: str) -> str | None:
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            return None  # a symlink (somewhere on the way) leads out of the root
        return real if os.path.exists(real) else None

    # -- answering --------------------------------------------------------------------------------
    def serve(self, event: HttpRequest, transport: Transport, *, now: float | None = None) -> bool:
        """Answer `event` from the document root if it names a file there; False otherwise."""
        if event.method not in ("GET", "HEAD"):
            return False
        real = self.resolve(event.path)
        if real is None:
            return False
        now = time.time() if now is None else now
        if os.path.isdir(real):
            for name in self.index_files:
                candidate = self._inside(os.path.join(real, name))
                if candidate is not None and os.path.isfile(candidate):
                    return self._send_file(event, transport, candidate, now)
            if self.autoindex:
                return self._send_listing(event, transport, real, now)
            return False
        return self._send_file(event, transport, real, now)

    def _headers(self, event: HttpRequest, now: float) -> list[tuple[str, str]]:
        return [("Server", SERVER_NAME), ("Date", date_value(now)),
                ("Connection", "keep-alive" if event.keep_alive else "close")]

    def _send_file(self, event: HttpRequest, transport: Transport, path: str, now: float) -> bool:
        try:
            info = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or not os.access(path, os.R_OK):
            return False
        size = info.st_size
        mtime = int(info.st_mtime)
        last_modified = http_date(mtime)
        headers = self._headers(event, now)
        headers.append(("Last-Modified", last_modified))
        since = event.headers.get("if-modified-since")
        if since is not None and self._not_modified(since, mtime):
            return self._finish(event, transport, status_line(304) + encode_headers(headers) + b"\r\n")
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        headers += [("Content-Type", content_type), ("Accept-Ranges", "bytes")]
        status, offset, length = 200, 0, size
        range_header = event.headers.get("range")
        if range_header is not None and event.headers.get("if-range", last_modified) == last_modified:
            wanted = parse_range(range_header, size)
            if wanted is False:
                headers += [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")]
                return self._finish(event, transport, status_line(416) + encode_headers(headers) + b"\r\n")
            if wanted is not None:
                first, last = wanted
                status, offset, length = 206, first, last - first + 1
                headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        headers.append(("Content-Length", str(length)))
        ok = transport.send(status_line(status) + encode_headers(headers) + b"\r\n")
        if ok and length and event.method != "HEAD":
            ok = transport.sendfile(path, offset, length)
        if not event.keep_alive:
            transport.close()
        return True

    @staticmethod
    def _not_modified(since: str, mtime: int) -> bool:
        try:
            return mtime <= int(parsedate_to_datetime(since).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            return False  # an unparsable date is ignored (RFC 9110 §13.1.3)

    def _send_listing(self, event: HttpRequest, transport: Transport, directory: str, now: float) -> bool:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return False
        base = event.path if event.path.endswith("/") else event.path + "/"
        title = html.escape(unquote_to_bytes(base).decode("utf-8", "replace"))
        rows = []
        for name in names:
            is_dir = os.path.isdir(os.path.join(directory, name))
            shown = name + "/" if is_dir else name
            href = quote(base, safe="/%") + quote(name, safe="") + ("/" if is_dir else "")
            rows.append(f'<li><a href="{html.escape(href, quote=True)}">{html.escape(shown)}</a></li>')
        body = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n"
                f"<body><h1>Index of {title}</h1>\n<ul>\n" + "\n".join(rows) + "\n</ul></body></html>\n"
                ).encode("utf-8", "surrogateescape")
        headers = self._headers(event, now)
        headers += [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        head = status_line(200) + encode_headers(headers) + b"\r\n"
        return self._finish(event, transport, head if event.method == "HEAD" else head + body)

    @staticmethod
    def _finish(event: HttpRequest, transport: Transport, data: bytes) -> bool:
        transport.send(data)
        if not event.keep_alive:
            transport.close()
        return True
