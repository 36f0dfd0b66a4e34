"""`threadswoole serve` with ASGI applications (http, websocket, lifespan), in every mode.

The applications are tests/serve_apps/asgi_apps.py; the clients are http.client, raw sockets
and, for WebSocket, a raw socket driven by the project's own sans-IO client half
(`client_request` / `check_response` / a client-side `WebSocketCodec`).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from serve_harness import ServeProcess, pipeline_and_read_late
from threadswoole.protocol.websocket import Close, Message, WebSocketCodec, encode_frame
from threadswoole.protocol.websocket.handshake import check_response, client_request

MODES = ["base", "process", "thread"]
WORKERS = {"base": 1, "process": 2, "thread": 2}


@pytest.fixture(scope="module", params=MODES)
def server(request):
    mode = request.param
    with ServeProcess(["asgi_apps:app", "--mode", mode, "--workers", str(WORKERS[mode])]) as process:
        process.mode = mode
        yield process


@pytest.fixture(scope="module", params=MODES)
def bad_server(request):
    mode = request.param
    with ServeProcess(["asgi_apps:bad", "--mode", mode, "--workers", str(WORKERS[mode])]) as process:
        process.mode = mode
        yield process


def _read_to_close(process, request: bytes) -> bytes:
    host, port = process.host_port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_auto_detected_and_lifespan_ran(server):
    server.wait_for(r"\(ASGI, ")
    response, body = server.request("GET", "/scope")
    scope = json.loads(body)
    assert scope["state"]["started_by"] > 0  # lifespan state, copied into the request's scope
    assert scope["task"] is True  # the request runs as an asyncio Task (eagerly started)


def test_scope(server):
    response, body = server.request("POST", "/scope/caf%C3%A9?x=1&y=%20", body=b"abc",
                                    headers={"X-Custom": "v", "Cookie": "a=1"})
    scope = json.loads(body)
    assert scope["type"] == "http" and scope["http_version"] == "1.1" and scope["method"] == "POST"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["path"] == "/scope/café"
    assert scope["raw_path"] == "/scope/caf%C3%A9"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["scheme"] == "http" and scope["root_path"] == ""
    assert ["x-custom", "v"] in scope["headers"] and ["cookie", "a=1"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"][1] == server.host_port[1]


def test_hello_keep_alive(server):
    connection = server.connection()
    try:
        for _ in range(3):
            connection.request("GET", "/hello")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"Hello, World!")
            assert response.getheader("Content-Length") == "13"
            assert not response.will_close
    finally:
        connection.close()


@pytest.mark.parametrize("size", [0, 1000, 70_000, 3 * 1024 * 1024])
def test_request_body(server, size):
    payload = os.urandom(size)
    response, body = server.request("POST", "/echo", body=payload)
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    if size > 65536:
        assert int(response.getheader("X-Messages")) > 1  # it streamed: several http.request messages


def test_chunked_request_body(server):
    parts = [os.urandom(40_000) for _ in range(5)]
    response, body = server.request("POST", "/echo", body=iter(parts))
    assert body == b"".join(parts)


def test_streaming_response(server):
    response, body = server.request("GET", "/stream")
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert body == b"".join(b"part %d\n" % i for i in range(5))


def test_cookies_and_redirect(server):
    response, body = server.request("GET", "/cookies")
    assert response.status == 307 and response.getheader("Location") == "/hello"
    assert [v for k, v in response.getheaders() if k.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_pathsend(server, tmp_path):
    path = tmp_path / "file.bin"
    data = os.urandom(2 * 1024 * 1024 + 3)
    path.write_bytes(data)
    response, body = server.request("GET", f"/pathsend?{path}")
    assert body == data and response.getheader("Content-Length") == str(len(data))


def test_http_disconnect(server):
    host, port = server.host_port
    start = server.count("SAW http.disconnect")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /disconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        time.sleep(0.2)
    server.wait_for("SAW http.disconnect", start=0)
    assert server.count("SAW http.disconnect") == start + 1


def test_slow_client_is_back_pressured(server):
    host, port = server.host_port
    before = sum(p.memory_info().rss for p in server.tree())
    with socket.create_connection((host, port), timeout=30) as slow:
        slow.sendall(b"GET /big-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)  # not reading: send() awaits in the application
        during = sum(p.memory_info().rss for p in server.tree())
        received = 0
        while received < 64 * 1024 * 1024:
            data = slow.recv(1 << 20)
            if not data:
                break
            received += len(data)
    assert received >= 64 * 1024 * 1024
    assert during - before < 32 * 1024 * 1024, (before, during)
    response, body = server.request("GET", "/hello")
    assert body == b"Hello, World!"


# -- WebSocket -------------------------------------------------------------------------------
class WsClient:
    def __init__(self, process, path="/ws", subprotocols=()):
        host, port = process.host_port
        self.sock = socket.create_connection((host, port), timeout=10)
        request, key = client_request(f"{host}:{port}", path, subprotocols=subprotocols)
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, self.rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self.key = key
        self.codec = WebSocketCodec(client_side=True, deliver_close=True)

    def send(self, opcode, payload):
        self.sock.sendall(encode_frame(opcode, payload, mask_key=os.urandom(4)))

    def receive(self):
        while True:
            if self.rest:
                data, self.rest = self.rest, b""
            else:
                data = self.sock.recv(65536)
                if not data:
                    return None
            for item in self.codec.feed(data):
                if isinstance(item, (Message, Close)):
                    return item

    def close(self):
        self.sock.close()


def test_websocket_echo(server):
    client = WsClient(server, subprotocols=["chat", "other"])
    try:
        assert client.status == 101
        check_response(client.status, client.headers, client.key)
        assert client.headers["sec-websocket-protocol"] == "chat"
        assert client.headers["x-accepted"] == "yes"
        client.send(1, "héllo".encode())
        assert client.receive() == Message(1, "echo: héllo".encode())
        client.send(2, b"\x01\x02\x03")
        assert client.receive() == Message(2, b"\x03\x02\x01")
        big = os.urandom(1024 * 1024)
        client.send(2, big)
        assert client.receive() == Message(2, big[::-1])
        client.send(1, b"close")
        closing = client.receive()
        assert isinstance(closing, Close) and closing.code == 4001 and closing.reason == "asked"
    finally:
        client.close()


def test_websocket_client_close_code_reaches_the_app(server):
    client = WsClient(server)
    try:
        client.send(1, b"x")
        client.receive()
        client.send(8, (3000).to_bytes(2, "big") + b"bye")
        echoed = client.receive()
        assert isinstance(echoed, Close) and echoed.code == 3000
    finally:
        client.close()


def test_websocket_rejected_is_403(server):
    client = WsClient(server, path="/ws/reject")
    try:
        assert client.status == 403
    finally:
        client.close()


def test_bad_handshake_is_400_without_the_app(server):
    host, port = server.host_port
    data = _read_to_close(server, f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                                  f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 400")



def test_a_client_that_pipelines_many_requests_and_reads_late_gets_every_answer(server):
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"e" * 2000
    assert pipeline_and_read_late(server, request, b"e" * 2000) == 5000


# A bad request pipelined behind one the application is still answering: the 400 follows that
# answer (AsgiHandler.failed queues it behind the unfinished cycle), then the connection closes.
def test_a_bad_request_behind_an_unfinished_answer_is_answered_after_it(server):
    data = _read_to_close(server, b"GET /sleep?0.1 HTTP/1.1\r\nHost: x\r\n\r\nBAD LINE\r\n\r\n")
    statuses = [part.split(b"\r\n", 1)[0] for part in data.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [b"200 OK", b"400 Bad Request"]

# -- bad applications ---------------------------------------------------------------------------
@pytest.mark.parametrize("path,what", [
    ("/raise-before", "failing before the response"),
    ("/no-response", "returned without starting a response"),
    ("/hop-by-hop", "hop-by-hop header b'transfer-encoding'"),
    ("/bad-status", "status must be an int"),
])
def test_application_errors_are_500(bad_server, path, what):
    response, body = bad_server.request("GET", path)
    assert response.status == 500 and body == b"500 Internal Server Error\n"
    bad_server.wait_for(what)
    response, body = bad_server.request("GET", "/fine")
    assert body == b"fine"


def test_error_after_the_start_cuts_the_response(bad_server):
    data = _read_to_close(bad_server, b"GET /raise-after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK") and b"first part" in data and not data.endswith(b"0\r\n\r\n")
    bad_server.wait_for("failing in the middle of the body")


def test_overrun_is_cut_at_content_length(bad_server):
    data = _read_to_close(bad_server, b"GET /overrun HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.endswith(b"\r\n\r\n12345")
    bad_server.wait_for("more than its Content-Length")
