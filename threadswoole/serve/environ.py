"""The PEP 3333 ``environ`` of a request, built from the codec's `HttpRequest` event.

Three layers, copied into one dict per request: the listener's constants (``wsgi.*``,
``SCRIPT_NAME``, ``SERVER_SOFTWARE``), the connection's facts (``REMOTE_ADDR``, ``REMOTE_PORT``,
``SERVER_PORT``, read once per connection from its shared record) and everything the request
head determines (method, path, query, protocol, ``HTTP_*``, ``CONTENT_*``, ``SERVER_NAME``).
The last is cached by the head's raw bytes: keep-alive clients send the same head again and
again, so most requests cost two dict copies, no header loop.

Rules (PEP 3333 and what servers agree on):

* ``PATH_INFO`` is the percent-decoded path as latin-1 text (the bytes, one character each),
  without ``SCRIPT_NAME`` when the path starts with it (``--root-path``).
* Header names containing ``_`` are dropped: ``X_Forwarded_For`` must not pose as
  ``X-Forwarded-For`` once both become ``HTTP_X_FORWARDED_FOR`` (the codec keeps them apart).
* A repeated header's values are joined with ", " (``Cookie`` with "; ") by the codec.
* ``SERVER_NAME`` / ``SERVER_PORT`` come from ``Host`` when the client sent one (the name it
  used), else from the listener; ``wsgi.url_scheme`` is ``https`` on a TLS listener.
* ``wsgi.input_terminated`` is True: ``read()`` returns b"" at the end of any body, chunked too.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from threadswoole.protocol.http.events import HttpRequest
from threadswoole.protocol.http.writer import SERVER_NAME as SOFTWARE

__all__ = ["EnvironBuilder", "FileWrapper", "path_info"]

_CACHE_LIMIT = 1024
_CGI_NAMES: dict[str, str | None] = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


def _cgi_name(name: str) -> str | None:
    """``x-forwarded-for`` -> ``HTTP_X_FORWARDED_FOR``; None for a name with ``_`` (dropped)."""
    known = _CGI_NAMES.get(name, "")
    if known != "":
        return known
    cgi = None if "_" in name else "HTTP_" + name.upper().replace("-", "_")
    if len(_CGI_NAMES) < 4096:
        _CGI_NAMES[name] = cgi
    return cgi


def path_info(path: str) -> str:
    """The request path, percent-decoded, as latin-1 text (PEP 3333's "bytes in a str")."""
    if "%" not in path and path.isascii():
        return path
    # the codec decoded the target as UTF-8 with surrogateescape: get the bytes back first
    return unquote_to_bytes(path.encode("utf-8", "surrogateescape")).decode("latin-1")


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server may send with ``sendfile(2)``.

    Iterating it reads `block_size` bytes at a time (when the server cannot use sendfile:
    a file without a path, a TLS connection, output already waiting); `close()` closes it."""

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.block_size)
        if data:
            return data
        raise StopIteration


class EnvironBuilder:
    """Environ dicts for one listener (see the module docstring)."""

    def __init__(self, *, scheme: str, server_name: str, server_port: int, root_path: str,
                 multithread: bool, multiprocess: bool, errors: Any = None) -> None:
        self.root_path = root_path.rstrip("/")
        self.scheme = scheme
        self.default_port = "443" if scheme == "https" else "80"
        self.listener_name = server_name
        self.base: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scheme,
            "wsgi.errors": errors if errors is not None else sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": SOFTWARE,
            "SCRIPT_NAME": self.root_path,
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(server_port),
        }
        self._heads: dict[bytes, dict[str, str]] = {}

    def for_connection(self, remote_addr: str, remote_port: int, server_port: int) -> dict[str, Any]:
        """The listener's constants plus one connection's facts (kept per connection)."""
        base = self.base.copy()
        base["REMOTE_ADDR"] = remote_addr
        base["REMOTE_PORT"] = str(remote_port)
        if server_port:
            base["SERVER_PORT"] = str(server_port)
        return base

    def build(self, connection_base: dict[str, Any], event: HttpRequest, body: Any) -> dict[str, Any]:
        """The environ of one request; `body` becomes ``wsgi.input``."""
        environ = self.template(connection_base, event)
        environ["wsgi.input"] = body
        return environ

    def template(self, connection_base: dict[str, Any], event: HttpRequest) -> dict[str, Any]:
        """Everything of a request's environ but ``wsgi.input``: a connection's facts and its
        head's. A caller may keep it for the connection's next request with the same head
        bytes (keep-alive clients repeat theirs) and copy it: one dict copy instead of a copy
        and an update, 0.56 us less per request."""
        environ = connection_base.copy()
        part = self._heads.get(event.head)
        if part is None:
            part = self._head_part(event)
        environ.update(part)
        return environ

    def _head_part(self, event: HttpRequest) -> dict[str, str]:
        path = path_info(event.path)
        root = self.root_path
        script = root
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root):]
        part = {
            "REQUEST_METHOD": event.method,
            "SCRIPT_NAME": script,
            "PATH_INFO": path,
            "QUERY_STRING": event.query,
            "SERVER_PROTOCOL": "HTTP/" + event.version,
            "RAW_URI": event.target,
            "REQUEST_URI": event.target,
        }
        for name, value in event.headers.items():
            cgi = _cgi_name(name)
            if cgi is not None:
                part[cgi] = value
        if event.chunked:
            part.pop("CONTENT_LENGTH", None)
        host = event.headers.get("host")
        if host:
            name, port = _split_host(host)
            part["SERVER_NAME"] = name
            part["SERVER_PORT"] = port or self.default_port
        if len(self._heads) >= _CACHE_LIMIT:
            self._heads.clear()
        self._heads[event.head] = part
        return part


def _split_host(host: str) -> tuple[str, str]:
    """``example.com:8080`` -> (example.com, 8080); ``[::1]:80`` -> ([::1], 80); no port: ""."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            rest = host[end + 1:]
            return host[:end + 1], rest[1:] if rest.startswith(":") else ""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return host, ""
