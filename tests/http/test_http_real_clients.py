"""Real clients (curl, http.client) against the HTTP layer over a real loopback socket.

The server core is not involved: `MiniServer` is the smallest loop that wires HttpCodec,
RequestBuilder, Request and Response to one accepted socket -- the same steps the event
dispatcher takes (feed, write Replies, build, call the handler, auto-end, clean up).
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable

import pytest

from threadswoole.http import HttpOptions, Request, RequestBuilder, Response
from threadswoole.protocol.codec import ProtocolError, Reply
from threadswoole.protocol.http import HttpBodyChunk, HttpCodec, HttpRequest

pytestmark = pytest.mark.timeout(60)
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


class SocketTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def send(self, data: bytes) -> bool:
        self.sock.sendall(data)
        return True

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        with open(path, "rb") as f:
            self.sock.sendfile(f, offset, length)
        return True

    def close(self) -> bool:
        self.closed = True
        return True


class MiniServer:
    """Accepts one connection at a time on 127.0.0.1 and serves it with `handler`."""

    def __init__(self, handler: Callable[[Request, Response], None], options: HttpOptions, **codec_options) -> None:
        self.handler = handler
        self.options = options
        self.codec_options = codec_options
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(30)
            while True:
                try:
                    conn, addr = self.listener.accept()
                except OSError:
                    return
                with conn:
                    self._serve(conn, addr)
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.errors.append(exc)

    def _serve(self, conn: socket.socket, addr: tuple) -> None:
        conn.settimeout(30)
        codec = HttpCodec(max_body_size=self.options.package_max_length, **self.codec_options)
        transport = SocketTransport(conn)
        builder: RequestBuilder | None = None
        while not transport.closed:
            data = conn.recv(65536)
            if not data:
                break
            try:
                items = codec.feed(data)
            except ProtocolError as err:
                conn.sendall(err.response)
                return
            for item in items:
                if isinstance(item, Reply):
                    conn.sendall(item.data)
                    continue
                if isinstance(item, HttpRequest):
                    builder = RequestBuilder(item, self.options)
                else:
                    assert isinstance(item, HttpBodyChunk) and builder is not None
                    builder.feed(item)
                if builder is not None and builder.complete:
                    if builder.rejected is not None:
                        conn.sendall(builder.rejected)
                        builder.abort()
                        return
                    request = builder.build(1, remote_addr=addr[0], remote_port=addr[1], server_port=self.port)
                    builder = None
                    response = Response.for_request(transport, request, self.options)
                    self.handler(request, response)
                    response.finish_if_open()
                    self.requests.append(request)
                    request.cleanup()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server thread did not stop"
        assert not self.errors, self.errors[0]


def curl(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30,
                          cwd="/", env={**os.environ, "no_proxy": "*"})


@needs_curl
def test_curl_keep_alive_two_requests_and_headers() -> None:
    def handler(request: Request, response: Response) -> None:
        response.header("x-path", request.server["request_uri"])
        response.cookie("seen", request.get.get("n", ""))
        response.end(f"hello {request.get.get('n')} from {request.header['user-agent'].split('/')[0]}")

    server = MiniServer(handler, HttpOptions())
    try:
        result = curl(server.port, "-i", f"http://127.0.0.1:{server.port}/a?n=1", f"http://127.0.0.1:{server.port}/b?n=2")
        out = result.stdout.decode()
        assert result.returncode == 0, result.stderr
        assert out.count("HTTP/1.1 200 OK") == 2 and "hello 1 from curl" in out and "hello 2 from curl" in out
        assert "X-Path: /b" in out and "Set-Cookie: seen=2; path=/" in out
    finally:
        server.close()
    assert len(server.requests) == 2  # one connection, kept alive (counted once the server stopped)


@needs_curl
def test_curl_multipart_upload_with_expect_continue(tmp_path: Path) -> None:
    upload = tmp_path / "photo.jpg"
    payload = os.urandom(300_000)
    upload.write_bytes(payload)
    seen: dict = {}

    def handler(request: Request, response: Response) -> None:
        entry = request.files["photo"]
        seen.update(entry, post=dict(request.post), content=Path(entry["tmp_name"]).read_bytes(),
                    expect=request.header.get("expect"))
        response.end("ok")

    tmp_dir = tmp_path / "uploads"
    tmp_dir.mkdir()
    server = MiniServer(handler, HttpOptions(upload_tmp_dir=str(tmp_dir)), max_buffered_body=16384)
    try:
        result = curl(server.port, "-H", "Expect: 100-continue", "-F", f"photo=@{upload};type=image/jpeg",
                      "-F", "caption=a cat", f"http://127.0.0.1:{server.port}/up")
        assert result.returncode == 0 and result.stdout == b"ok", result.stderr
        assert seen["name"] == "photo.jpg" and seen["type"] == "image/jpeg" and seen["size"] == len(payload)
        assert seen["content"] == payload and seen["post"] == {"caption": "a cat"}
        assert seen["expect"] == "100-continue"
    finally:
        server.close()
    assert os.listdir(tmp_dir) == []  # cleaned up after the handler (checked once the server stopped)


@needs_curl
def test_curl_chunked_upload_gzip_response_and_413(tmp_path: Path) -> None:
    def handler(request: Request, response: Response) -> None:
        response.end(request.raw_content()[::-1] * 10)

    server = MiniServer(handler, HttpOptions(upload_tmp_dir=str(tmp_path), upload_max_filesize=1000))
    try:
        result = curl(server.port, "--compressed", "-H", "Transfer-Encoding: chunked", "--data-binary", "abcdef",
                      "-D", "-", f"http://127.0.0.1:{server.port}/echo")
        assert result.returncode == 0, result.stderr
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        assert b"Content-Encoding: gzip" in head and body == b"fedcba" * 10
        big = tmp_path / "big.bin"
        big.write_bytes(b"x" * 5000)
        result = curl(server.port, "-o", "/dev/null", "-w", "%{http_code}", "-F", f"f=@{big}",
                      f"http://127.0.0.1:{server.port}/up")
        assert result.stdout == b"413"
    finally:
        server.close()
    assert [n for n in os.listdir(tmp_path) if n.startswith("swoole.upfile.")] == []


def test_http_client_reads_every_response_shape(tmp_path: Path) -> None:
    static_file = tmp_path / "file.txt"
    static_file.write_bytes(b"from disk")

    def handler(request: Request, response: Response) -> None:
        path = request.server["request_uri"]
        if path == "/chunked":
            response.write(b"part1,")
            response.write(b"part2")
        elif path == "/gzip":
            response.gzip(5)
            response.write(b"zipped " * 30)
        elif path == "/file":
            response.header("Content-Type", "text/plain")
            response.sendfile(static_file)
        elif path == "/redirect":
            response.redirect("/chunked")
        elif path == "/empty":
            pass  # auto-end
        else:
            response.status(404)
            response.end(b"no")

    server = MiniServer(handler, HttpOptions())
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        for path, status, body in [("/chunked", 200, b"part1,part2"), ("/file", 200, b"from disk"),
                                   ("/redirect", 302, b""), ("/empty", 200, b""), ("/missing", 404, b"no")]:
            conn.request("GET", path)
            reply = conn.getresponse()
            assert (reply.status, reply.read()) == (status, body), path
        conn.request("GET", "/gzip", headers={"Accept-Encoding": "gzip"})
        reply = conn.getresponse()
        assert reply.getheader("Content-Encoding") == "gzip"
        assert gzip.decompress(reply.read()) == b"zipped " * 30
        conn.request("HEAD", "/chunked")
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == b""
        conn.request("POST", "/missing", body=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert conn.getresponse().read() == b"no"
        conn.close()
    finally:
        server.close()
    assert len(server.requests) == 8


def test_bad_request_gets_400_and_close() -> None:
    server = MiniServer(lambda request, response: response.end(b"never"), HttpOptions(package_max_length=100))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in data
        assert server.requests == []
    finally:
        server.close()
