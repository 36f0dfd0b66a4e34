"""Helpers of the end-to-end tests of `threadswoole.http.Server` (tests/test_http_server_*.py).

* `module_server`: a module-scoped `run_server` (one server per mode per test module, so a
  module of twenty checks starts three servers, not sixty);
* `RawConnection`: a raw socket that writes bytes and reads whole HTTP responses back
  (Content-Length, chunked or until close), for what real clients refuse to send;
* `curl(...)`: the curl command with a timeout; `needs_curl` / `needs_tool` skip markers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from conftest import MODES, ServerFactory, ServerHandle


def needs_tool(name: str) -> Any:
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed")


needs_curl = needs_tool("curl")


def http_server_class() -> Any:
    from threadswoole import http as ts_http

    return ts_http.Server


def module_server(setup: Callable[..., Any], settings: dict[str, Any] | Callable[[str, str], dict[str, Any]] | None = None, *, modes: list[str] = MODES) -> Any:
    """A module-scoped fixture: an http.Server running `setup` in each of `modes`.

    `settings` may be a function of (mode, tmpdir) for settings that need a directory.
    The fixture's value is the ServerHandle; its tmpdir is the module's temp directory.
    """

    @pytest.fixture(scope="module", params=modes)
    def fixture(request: Any, tmp_path_factory: Any) -> Any:
        directory = tmp_path_factory.mktemp("http")
        factory = ServerFactory(directory)
        values = settings(request.param, str(directory)) if callable(settings) else dict(settings or {})
        handle = factory(setup, mode=request.param, settings=values, server_class=http_server_class())
        handle.mode = request.param  # type: ignore[attr-defined]
        try:
            yield handle
        finally:
            factory.cleanup()

    return fixture


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: dict[str, str]  # lower-cased keys, repeated fields joined with "\n"
    body: bytes
    head: bytes
    chunks: list[bytes] = field(default_factory=list)  # the chunk payloads, when chunked

    def header_list(self, name: str) -> list[str]:
        value = self.headers.get(name.lower())
        return [] if value is None else value.split("\n")


class RawConnection:
    """A raw client socket that reads HTTP responses back whole."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, timeout: float = 10.0, unix: str | None = None,
                 sock: socket.socket | None = None) -> None:
        if sock is not None:  # a connected socket (a TLS one, say)
            self.sock = sock
        elif unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buffer = b""

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            return False
        self.buffer += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed in a line; got {self.buffer[:200]!r}")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise EOFError(f"connection closed with {size - len(self.buffer)} of {size} body bytes missing")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, *, head_only: bool = False) -> RawResponse:
        """The next response (a 1xx too); `head_only` for the answer to a HEAD request."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed before a whole head; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status, reason = (lines[0].decode("latin-1").split(" ", 2) + [""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            key = name.strip().lower()
            headers[key] = headers[key] + "\n" + value.strip() if key in headers else value.strip()
        response = RawResponse(int(status), reason, version, headers, b"", head + b"\r\n\r\n")
        code = response.status
        if head_only or code < 200 or code in (204, 304):
            return response
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass  # trailers
                    break
                response.chunks.append(self._exact(size))
                if self._exact(2) != b"\r\n":
                    raise AssertionError("chunk data not followed by CRLF")
            response.body = b"".join(response.chunks)
        elif "content-length" in headers:
            response.body = self._exact(int(headers["content-length"]))
        else:
            while self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def request(self, data: bytes, **kw: Any) -> RawResponse:
        self.send(data)
        return self.read_response(**kw)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF or reset) within `timeout`, with
        nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buffer += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def get(path: str = "/", *, host: str = "t", extra: str = "", version: str = "1.1") -> bytes:
    """A GET request's bytes."""
    return f"GET {path} HTTP/{version}\r\nHost: {host}\r\n{extra}\r\n".encode()


def curl(*args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run curl quietly (-sS), failing the test on a curl error when `check`."""
    out = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` (for things with no event: a file deleted, a counter in shared memory)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def listing(directory: str, prefix: str = "swoole.upfile.") -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(prefix))




def echo_app(server: Any, emit: Callable[..., Any]) -> None:
    """A handler that answers every request with what it saw, as JSON (bodies base64); a path
    under /emit/ is also reported as a "request" event (tests must read what they ask for:
    the harness's datagram queue is short, and a server blocked in emit() stalls). /stats
    answers server.stats(), /emit/raise raises, /fixed/<n> answers n bytes."""
    import base64
    import json

    def on_request(request: Any, response: Any) -> None:
        path = request.server["request_uri"]
        if path == "/stats":
            response.header("Content-Type", "application/json")
            response.end(json.dumps(server.stats()))
            return
        if path.startswith("/emit/"):  # only these are reported: an unread event queue stalls the server
            emit("request", path=path, method=request.server["request_method"], fd=request.fd)
        if path.startswith("/fixed/"):  # /fixed/<n>: n bytes of "f", whatever the method
            response.end(b"f" * int(path[7:]))
            return
        if path == "/emit/raise":
            raise RuntimeError("raised on purpose by the test handler")
        seen = {
            "fd": request.fd, "worker": server.worker_id, "header": request.header, "server": request.server,
            "get": request.get, "post": request.post, "cookie": request.cookie, "files": request.files,
            "raw": base64.b64encode(request.raw_content()).decode(), "data": base64.b64encode(request.get_data()).decode(),
        }
        response.header("Content-Type", "application/json")
        response.end(json.dumps(seen))

    server.on("request", on_request)


def decode_echo(body: bytes) -> dict[str, Any]:
    import base64
    import json

    seen = json.loads(body)
    seen["raw"] = base64.b64decode(seen["raw"])
    seen["data"] = base64.b64decode(seen["data"])
    return seen


def server_stats(port: int, **kw: Any) -> dict[str, int]:
    """stats() of the server running `echo_app` (its /stats route)."""
    import json

    with RawConnection(port, **kw) as conn:
        return json.loads(conn.request(get("/stats", extra="Connection: close\r\n")).body)


__all__ = ["echo_app", "decode_echo", "server_stats", "module_server", "RawConnection", "RawResponse", "get", "curl", "needs_curl", "needs_tool",
           "wait_until", "listing", "http_server_class", "ServerHandle"]
