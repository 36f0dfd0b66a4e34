"""`Request`: the Swoole ``Http\\Request`` object, built from an `HttpRequest` event.

Everything derived is computed on first access and kept: ``server``, ``get``, ``post``,
``cookie``, ``files``. A handler that reads only ``header`` and ``get`` never pays for cookie
parsing, the ``server`` dict or multipart parsing (``stress/micro_http.py`` measures the
difference). The attributes can be assigned, as in PHP.

* ``header``: the event's headers (lower-cased keys).
* ``server``: ``request_method``, ``request_uri`` (the path, no query), ``path_info`` (the
  path percent-decoded), ``query_string`` (only when there is one), ``request_time`` (int),
  ``request_time_float``, ``server_protocol`` (``HTTP/1.1``), ``server_port``, ``server_addr``,
  ``remote_port``, ``remote_addr``, ``master_time``. The time is stamped in the worker.
* ``get``: the query string, at most 128 keys. ``post``: urlencoded bodies when
  ``http_parse_post``, and the text fields of multipart bodies (Swoole does both), at most 128.
  Only for POST, PUT, PATCH and DELETE, as Swoole. ``cookie``: when ``http_parse_cookie``.
  ``files``: multipart file parts when ``http_parse_files`` (see `threadswoole.http.uploads`).
* Temp files are deleted by `cleanup()` (the server calls it after ``on_request``) or when
  the Request is garbage-collected (`weakref.finalize`), whichever comes first.
"""

from __future__ import annotations

import time
import weakref
from typing import Any
from urllib.parse import unquote

from threadswoole._aliases import alias
from threadswoole.http.options import HttpOptions
from threadswoole.http.uploads import UploadSink
from threadswoole.protocol.http.events import HttpRequest
from threadswoole.protocol.http.forms import parse_cookie, parse_query, parse_urlencoded
from threadswoole.protocol.http.multipart import boundary_of

__all__ = ["Request", "FORM_METHODS"]

#: Methods whose bodies are parsed into ``post`` / ``files`` (Swoole's list).
FORM_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_OPTIONS = HttpOptions()
_UNSET: Any = object()


class Request:
    """One HTTP request as the application sees it (see the module docstring)."""

    # What every request sets lives in slots; the rest (parsed lazily, or rarely set) lives in
    # the instance dict, defaulting to the class attributes below: a request is 10 stores.
    __slots__ = ("fd", "header", "event", "body", "options", "remote_addr", "remote_port", "server_port",
                 "request_time", "master_time", "__dict__", "__weakref__")
    stream_id = 0  # (HTTP/2 streams are out of scope)
    server_addr = ""
    _server: Any = _UNSET
    _get: Any = _UNSET
    _post: Any = _UNSET
    _cookie: Any = _UNSET
    _files: Any = _UNSET
    _uploads: "UploadSink | None" = None
    _finalizer: "weakref.finalize | None" = None

    def __init__(self, event: HttpRequest, fd: int = 0, *, remote_addr: str = "", remote_port: int = 0,
                 server_addr: str = "", server_port: int = 0, request_time: float | None = None,
                 master_time: int | None = None, options: HttpOptions | None = None,
                 body: bytes | None = None, uploads: UploadSink | None = None) -> None:
        self.fd = fd
        self.stream_id = 0
        self.header: dict[str, str] = event.headers
        self.event = event
        self.body = event.body if body is None else body
        self.options = options or _DEFAULT_OPTIONS
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.server_addr = server_addr
        self.server_port = server_port
        self.request_time = time.time() if request_time is None else request_time
        self.master_time = int(self.request_time) if master_time is None else master_time
        self._server = _UNSET
        self._get = _UNSET
        self._post = _UNSET
        self._cookie = _UNSET
        self._files = _UNSET
        self._uploads = uploads
        self._finalizer: weakref.finalize | None = None
        if uploads is not None:
            self._finalizer = weakref.finalize(self, uploads.cleanup)

    @classmethod
    def of_connection(cls, event: HttpRequest, fd: int, remote_addr: str, remote_port: int, server_port: int, now: float, options: HttpOptions) -> "Request":
        """The server's constructor for a whole request (no upload stream): the same object as
        Request(event, fd, ...) with positional facts, for the per-request path."""
        self = cls.__new__(cls)
        self.fd = fd
        self.header = event.headers
        self.event = event
        self.body = event.body
        self.options = options
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.server_port = server_port
        self.request_time = now
        self.master_time = int(now)
        return self

    # -- the Swoole attributes ---------------------------------------------------------------------
    @property
    def server(self) -> dict[str, Any]:
        value = self._server
        if value is _UNSET:
            value = self._server = self._build_server()
        return value

    @server.setter
    def server(self, value: dict[str, Any]) -> None:
        self._server = value

    @property
    def get(self) -> dict[str, str]:
        value = self._get
        if value is _UNSET:
            value = self._get = parse_query(self.event.query)
        return value

    @get.setter
    def get(self, value: dict[str, str]) -> None:
        self._get = value

    @property
    def post(self) -> dict[str, str]:
        value = self._post
        if value is _UNSET:
            value = self._post = self._parse_post()
        return value

    @post.setter
    def post(self, value: dict[str, str]) -> None:
        self._post = value

    @property
    def cookie(self) -> dict[str, str]:
        value = self._cookie
        if value is _UNSET:
            header = self.event.headers.get("cookie")
            value = self._cookie = parse_cookie(header) if header and self.options.http_parse_cookie else {}
        return value

    @cookie.setter
    def cookie(self, value: dict[str, str]) -> None:
        self._cookie = value

    @property
    def files(self) -> dict[str, dict]:
        value = self._files
        if value is _UNSET:
            sink = self._multipart()
            value = self._files = sink.files if sink is not None and self.options.http_parse_files else {}
        return value

    @files.setter
    def files(self, value: dict[str, dict]) -> None:
        self._files = value

    def raw_content(self) -> bytes:
        """The request body (de-chunked), like PHP's ``php://input``."""
        return self.body

    rawContent = alias("raw_content")
    rawcontent = alias("raw_content")

    def get_data(self) -> bytes:
        """The whole request as received: head + body (a chunked body comes de-chunked)."""
        return self.event.head + self.body

    getData = alias("get_data")

    def cleanup(self) -> None:
        """Delete this request's upload temp files now (safe to call more than once)."""
        if self._finalizer is not None:
            self._finalizer()

    # -- helpers -------------------------------------------------------------------------------
    def _build_server(self) -> dict[str, Any]:
        event = self.event
        path = event.path
        now = self.request_time
        server: dict[str, Any] = {
            "request_method": event.method,
            "request_uri": path,
            "path_info": unquote(path, errors="surrogateescape") if "%" in path else path,
            "request_time": int(now),
            "request_time_float": now,
            "server_protocol": "HTTP/" + event.version,
            "server_port": self.server_port,
            "remote_port": self.remote_port,
            "remote_addr": self.remote_addr,
            "master_time": self.master_time,
        }
        if self.server_addr:
            server["server_addr"] = self.server_addr
        if event.query:
            server["query_string"] = event.query
        return server

    def _parse_post(self) -> dict[str, str]:
        event = self.event
        if event.method not in FORM_METHODS or not self.options.http_parse_post:
            return {}
        content_type = event.headers.get("content-type", "")
        main = content_type.partition(";")[0].strip(" \t").lower()
        if main == "application/x-www-form-urlencoded":
            return parse_urlencoded(self.body)
        if main == "multipart/form-data":
            sink = self._multipart()
            return sink.post if sink is not None else {}
        return {}

    def _multipart(self) -> UploadSink | None:
        """The multipart body parsed (once; lazily unless the builder did it while streaming)."""
        sink = self._uploads
        if sink is not None:
            return sink
        event = self.event
        options = self.options
        if event.method not in FORM_METHODS or not (options.http_parse_files or options.http_parse_post):
            return None
        boundary = boundary_of(event.headers.get("content-type", ""))
        if boundary is None:
            return None
        sink = UploadSink(boundary, tmp_dir=options.upload_tmp_dir, max_file_size=options.upload_max_filesize,
                          keep_fields=options.http_parse_post, keep_files=options.http_parse_files)
        self._uploads = sink
        self._finalizer = weakref.finalize(self, sink.cleanup)
        sink.feed(self.body)  # no UploadTooLarge: the whole body is within upload_max_filesize (see builder)
        sink.finish()
        return sink

    def __repr__(self) -> str:
        event = self.event
        return f"<Request fd={self.fd} {event.method} {event.target} HTTP/{event.version}>"
