"""threadswoole.websocket.Server end to end, in every mode: handshake, echo, push from open,
compression, pings, close, disconnect, exist, websocket_status, a failed handshake."""

from __future__ import annotations

import socket

import pytest

from threadswoole.protocol.websocket import Close, Message, MessageEncoder, WebSocketCodec
from threadswoole.protocol.websocket import deflate as ws_deflate
from threadswoole.protocol.websocket import handshake as ws_handshake

pytestmark = pytest.mark.timeout(60)


class Client:
    """A WebSocket client on the codec's client side (a real socket, a real handshake)."""

    def __init__(self, port: int, compress: bool = False, headers: bytes = b"") -> None:
        request, self.key = ws_handshake.client_request("127.0.0.1", "/", None, extensions=ws_deflate.offer() if compress else None)
        if headers:
            request = request[:-2] + headers + b"\r\n"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        self.status_line = head.split(b"\r\n")[0]
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        extensions = fields.get(b"Sec-WebSocket-Extensions")
        self.deflate = ws_deflate.accept_response(extensions.decode()) if extensions else None
        self.codec = WebSocketCodec(client_side=True, deflate=self.deflate, deliver_close=True)
        self.encoder = MessageEncoder(self.deflate, client_side=True)
        self.events = self.codec.feed(rest) if rest and self.status_line.endswith(b"101 Switching Protocols") else []

    def send(self, data: bytes, opcode: int = 2) -> None:
        self.sock.sendall(self.encoder.encode(opcode, data))

    def next_event(self) -> object:
        while not self.events:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed")
            self.events += [e for e in self.codec.feed(chunk) if isinstance(e, (Message, Close))]
        return self.events.pop(0)

    def close(self) -> None:
        self.sock.close()


def _echo(server, emit):
    def on_open(srv, request):
        emit("open", fd=request.fd, exist=srv.exist(request.fd), status=srv.get_client_info(request.fd)["websocket_status"])
        srv.push(request.fd, b"welcome")

    def on_message(srv, frame):
        if frame.data == b"bye":
            emit("disconnect", ok=srv.disconnect(frame.fd, 4000, "bye"), bad=srv.disconnect(frame.fd, 1001))
            return
        srv.push(frame.fd, frame.data, frame.opcode)

    server.on("open", on_open)
    server.on("message", on_message)
    server.on("close", lambda srv, fd, rid: emit("close", fd=fd))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
def test_handshake_echo_push_from_open_and_disconnect(run_server, mode, compress):
    from threadswoole import websocket

    handle = run_server(_echo, mode=mode, settings={"worker_num": 1, "websocket_compression": True}, server_class=websocket.Server)
    client = Client(handle.port, compress=compress)
    assert client.status_line == b"HTTP/1.1 101 Switching Protocols"
    assert (client.deflate is not None) is compress
    opened = handle.wait("open")
    assert opened["exist"] is True and opened["status"] == 3
    assert client.next_event().data == b"welcome"
    for size in (0, 1, 125, 126, 65536, 300_000):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        client.send(payload)
        echoed = client.next_event()
        assert echoed.data == payload and echoed.opcode == 2
    client.send("é text".encode(), opcode=1)
    assert client.next_event().data == "é text".encode()
    client.send(b"bye")
    closing = client.next_event()
    assert isinstance(closing, Close) and closing.code == 4000 and closing.reason == "bye"
    event = handle.wait("disconnect")
    assert event["ok"] is True and event["bad"] is False
    handle.wait("close", fd=opened["fd"])
    client.close()
    assert handle.stop() == 0


def test_a_bad_handshake_gets_400_and_plain_http_gets_400_without_on_request(run_server, mode):
    from threadswoole import websocket

    handle = run_server(_echo, mode=mode, settings={"worker_num": 1}, server_class=websocket.Server)
    bad = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert bad.recv(4096).startswith(b"HTTP/1.1 400")
    plain = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain.recv(4096).startswith(b"HTTP/1.1 400")
    good = Client(handle.port)  # the server still serves
    assert good.next_event().data == b"welcome"
    for sock in (bad, plain):
        sock.close()
    good.close()
    assert handle.stop() == 0


def test_a_handshake_callback_writes_the_101_and_open_does_not_fire(run_server, mode):
    from threadswoole import websocket

    def setup(server, emit):
        def on_handshake(request, response):
            key = request.header["sec-websocket-key"]
            response.status(101)
            response.header("Upgrade", "websocket")
            response.header("Connection", "Upgrade")
            response.header("Sec-WebSocket-Accept", ws_handshake.accept_key(key))
            response.header("X-Custom", "yes")
            response.end()
            emit("handshake")
            return True

        server.on("handshake", on_handshake)
        server.on("open", lambda srv, request: emit("open"))
        server.on("message", lambda srv, frame: srv.push(frame.fd, frame.data.upper(), frame.opcode))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, server_class=websocket.Server)
    client = Client(handle.port)
    assert client.status_line == b"HTTP/1.1 101 Switching Protocols"
    handle.wait("handshake")
    client.send(b"abc")
    assert client.next_event().data == b"ABC"
    assert not [e for e in handle.drain() if e["event"] == "open"]
    client.close()
    assert handle.stop() == 0
