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
_new_object = object.__new__  # (cls.__new__ looks the name up on the class each time)


class Peer:
    """Who a request came from and on which server port (the connection's facts in `server`)."""

    __slots__ = ("remote_addr", "remote_port", "server_port")

    def __init__(self, remote_addr: str, remote_port: int, server_port: int) -> None:
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.server_port = server_port


class Request:
    """One HTTP request as the application sees it (see the module docstring)."""

    # What every request sets lives in slots; the rest (parsed lazily, or rarely set) lives in
    # the instance dict, defaulting to the class attributes below: a request is 7 stores. The
    # connection's facts are one object (`_peer`), shared by every request of the connection.
    __slots__ = ("fd", "header", "event", "body", "options", "_peer", "request_time", "__dict__", "__weakref__")
    stream_id = 0  # (HTTP/2 streams are out of scope)
    server_addr = ""
    _master_time: "int | None" = None  # None: int(request_time)
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
        self._peer = Peer(remote_addr, remote_port, server_port)
        self.server_addr = server_addr
        self.request_time = time.time() if request_time is None else request_time
        self._master_time = master_time
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
    def of_connection(cls, event: HttpRequest, fd: int, peer: Any, now: float, options: HttpOptions) -> "Request":
        """The server's constructor for a whole request (no upload stream): the same object as
        Request(event, fd, ...), for the per-request path. `peer` is any object with
        `remote_addr`, `remote_port` and `server_port` (the server's per-connection facts,
        kept as they are: 3 stores and 3 arguments less per request than copying them)."""
        self = _new_object(cls)
        self.fd = fd
        self.header = event.headers
        self.event = event
        self.body = event.body
        self.options = options
        self._peer = peer
        self.request_time = now
        return self

    # -- the connection's facts (what `server` reports) ------------------------------------------
    @property
    def remote_addr(self) -> str:
        return self._peer.remote_addr

    @remote_addr.setter
    def remote_addr(self, value: str) -> None:
        peer = self._peer
        self._peer = Peer(value, peer.remote_port, peer.server_port)

    @property
    def remote_port(self) -> int:
        return self._peer.remote_port

    @remote_port.setter
    def remote_port(self, value: int) -> None:
        peer = self._peer
        self._peer = Peer(peer.remote_addr, value, peer.server_port)

    @property
    def server_port(self) -> int:
        return self._peer.server_port

    @server_port.setter
    def server_port(self, value: int) -> None:
        peer = self._peer
        self._peer = Peer(peer.remote_addr, peer.remote_port, value)

    @property
    def master_time(self) -> int:
        value = self._master_time
        return int(self.request_time) if value is None else value

    @master_time.setter
    def master_time(self, value: int) -> None:
        self._master_time = value

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
        peer = self._peer
        server: dict[str, Any] = {
            "request_method": event.method,
            "request_uri": path,
            "path_info": unquote(path, errors="surrogateescape") if "%" in path else path,
            "request_time": int(now),
            "request_time_float": now,
            "server_protocol": "HTTP/" + event.version,
            "server_port": peer.server_port,
            "remote_port": peer.remote_port,
            "remote_addr": peer.remote_addr,
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
