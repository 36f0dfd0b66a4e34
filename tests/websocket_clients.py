"""WebSocket clients of the end-to-end tests (tests/test_websocket_server*.py), on real sockets.

* `WsClient`: written from RFC 6455 / RFC 7692 with the standard library only (zlib for
  permessage-deflate), independent of the codec under test, and able to send what real
  clients refuse to (unmasked frames, reserved bits, lying lengths); it reads the server's
  events while it waits (`ServerHandle.pump`);
* `frame(...)`: one client frame as bytes, any field settable;
* `CodecClient`: a client on the project's own codec (client side), as the first tests had.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import struct
import time
import zlib
from typing import Any

from threadswoole.protocol.websocket import Close, Message, MessageEncoder, WebSocketCodec
from threadswoole.protocol.websocket import deflate as ws_deflate
from threadswoole.protocol.websocket import handshake as ws_handshake

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


# -- frames -----------------------------------------------------------------------------------
def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0,
          length: int | None = None, mask_key: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """One frame as a client writes it; `rsv` is the 3 RSV bits (4 = RSV1), `length` overrides
    the announced payload length (the payload bytes written stay `payload`)."""
    announced = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mask_bit = 0x80 if mask else 0
    if announced < 126:
        head += bytes([mask_bit | announced])
    elif announced < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", announced)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", announced)
    if not mask:
        return head + payload
    return head + mask_key + bytes(b ^ mask_key[i & 3] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class Received:
    """One frame or message from the server: `opcode`, `data`, `fin`, `rsv1`; `code`/`reason`
    for close frames."""

    def __init__(self, opcode: int, data: bytes, fin: bool = True, rsv1: bool = False) -> None:
        self.opcode, self.data, self.fin, self.rsv1 = opcode, data, fin, rsv1
        self.code = struct.unpack("!H", data[:2])[0] if opcode == CLOSE and len(data) >= 2 else (1005 if opcode == CLOSE else None)
        self.reason = data[2:].decode("utf-8", "replace") if opcode == CLOSE else None

    def json(self) -> Any:
        return json.loads(self.data)

    def __repr__(self) -> str:
        return f"Received(opcode={self.opcode}, fin={self.fin}, code={self.code}, data={self.data[:60]!r})"


# -- the client -------------------------------------------------------------------------------
class WsClient:
    """A WebSocket client on a real socket. Connects and handshakes in the constructor (unless
    `handshake=False`); `status`, `headers` (lower-cased) hold the server's answer. With
    `compress`, it offers permessage-deflate (True, or the offer's text) and, if accepted,
    compresses what it sends, with the window bits and context takeover the answer says.
    `server` is a ServerHandle (its events are pumped while waiting) or a port; `port` and
    `unix` (a socket path) pick another listener of that server."""

    def __init__(self, server: Any, *, path: str = "/", compress: bool | str = False, protocols: str | None = None,
                 extra: str = "", handshake: bool = True, rcvbuf: int | None = None, timeout: float = 10.0,
                 read_fd: bool = False, unix: str | None = None, port: int | None = None) -> None:
        port = port if port is not None else server if isinstance(server, int) else server.port
        self.events = None if isinstance(server, int) else server  # pumped while we wait
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(unix if unix else ("127.0.0.1", port))
        self.buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.deflate: str | None = None
        self._compressor: Any = None
        self._decompressor: Any = None
        self._reset_decompressor = self._reset_compressor = False
        self._client_bits = self._server_bits = 15
        self.fd: int | None = None
        if handshake:
            self.handshake(path, compress, protocols, extra)
            if read_fd and self.status == 101:
                self.fd = self.recv_message().json()["fd"]

    # -- the upgrade ----------------------------------------------------------------------
    def handshake(self, path: str = "/", compress: bool | str = False, protocols: str | None = None, extra: str = "",
                  key: str | None = None, version: str = "13") -> None:
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"]
        if protocols:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        if compress:
            offer = compress if isinstance(compress, str) else "permessage-deflate; client_max_window_bits"
            lines.append(f"Sec-WebSocket-Extensions: {offer}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode())
        head = self.read_head()
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for field in fields:
            name, _, value = field.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == expected, self.headers
            self.deflate = self.headers.get("sec-websocket-extensions")
            if self.deflate:
                assert self.deflate.startswith("permessage-deflate"), self.deflate
                params = dict((p.strip().partition("=")[0], p.strip().partition("=")[2]) for p in self.deflate.split(";")[1:])
                self._client_bits = int(params.get("client_max_window_bits") or 15)
                # decompressing with the announced window fails if the server reached further back
                self._server_bits = int(params.get("server_max_window_bits") or 15)
                self._reset_decompressor = "server_no_context_takeover" in params
                self._reset_compressor = "client_no_context_takeover" in params
                self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self._client_bits)
                self._decompressor = zlib.decompressobj(-self._server_bits)

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"closed during the handshake answer: {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def read_body(self) -> bytes:
        """The body of an HTTP answer whose head was just read (Content-Length, else to EOF)."""
        length = self.headers.get("content-length")
        if length is not None:
            self._need(int(length))
            body, self.buffer = self.buffer[:int(length)], self.buffer[int(length):]
            return body
        while self._fill():
            pass
        body, self.buffer = self.buffer, b""
        return body

    # -- sending ----------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, data: bytes | str, opcode: int | None = None, *, fin: bool = True) -> None:
        """One whole message (compressed when negotiated)."""
        payload = data.encode() if isinstance(data, str) else data
        opcode = (TEXT if isinstance(data, str) else BINARY) if opcode is None else opcode
        rsv = 0
        if self._compressor is not None and opcode in (TEXT, BINARY):
            payload = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
            assert payload.endswith(b"\x00\x00\xff\xff")
            payload, rsv = payload[:-4], 4
            if self._reset_compressor:
                self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self._client_bits)
        self.sock.sendall(frame(opcode, payload, fin=fin, rsv=rsv, mask_key=os.urandom(4)))

    def command(self, cmd: str, **args: Any) -> None:
        self.send(json.dumps({"cmd": cmd, **args}))

    def close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.sock.sendall(frame(CLOSE, b"" if code is None else close_payload(code, reason)))

    # -- receiving --------------------------------------------------------------------------
    def wait_readable(self, timeout: float) -> bool:
        """Wait for the socket to be readable, reading the server's events meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if self.events is not None:
                self.events.pump()
            remaining = deadline - time.monotonic()
            if select.select([self.sock], [], [], max(0.0, min(0.05, remaining)))[0]:
                return True
            if remaining <= 0:
                return False

    def _fill(self) -> bool:
        if not self.wait_readable(self.timeout):
            raise socket.timeout(f"nothing from the server within {self.timeout}s; have {self.buffer[:80]!r}")
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            return False
        self.buffer += data
        return True

    def _need(self, size: int) -> None:
        while len(self.buffer) < size:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buffer)} of {size} bytes: {self.buffer[:80]!r}")

    def recv_frame(self) -> Received:
        """The next frame as sent (not reassembled, not inflated); server frames must not be masked."""
        self._need(2)
        b0, b1 = self.buffer[0], self.buffer[1]
        assert not b1 & 0x80, "the server masked a frame"
        length, pos = b1 & 0x7F, 2
        if length == 126:
            self._need(4)
            length, pos = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            self._need(10)
            length, pos = struct.unpack("!Q", self.buffer[2:10])[0], 10
        self._need(pos + length)
        payload, self.buffer = self.buffer[pos:pos + length], self.buffer[pos + length:]
        return Received(b0 & 0x0F, payload, bool(b0 & 0x80), bool(b0 & 0x40))

    def recv_message(self, *, skip_control: bool = True) -> Received:
        """The next whole data message (reassembled, inflated); a close frame is returned as
        it is; pings and pongs are skipped unless `skip_control` is False."""
        parts: list[bytes] = []
        first: Received | None = None
        while True:
            got = self.recv_frame()
            if got.opcode >= 8:
                if got.opcode == CLOSE or not skip_control:
                    return got
                continue
            first = first or got
            parts.append(got.data)
            if got.fin:
                break
        data = b"".join(parts)
        if first.rsv1:
            assert self._decompressor is not None, "a compressed frame on an uncompressed connection"
            data = self._decompressor.decompress(data + b"\x00\x00\xff\xff")
            if self._reset_decompressor:
                self._decompressor = zlib.decompressobj(-self._server_bits)
        return Received(first.opcode, data, True, first.rsv1)

    def expect_close(self, timeout: float = 10.0) -> Received:
        """The server's close frame (data frames before it are skipped), then EOF."""
        while True:
            got = self.recv_frame()
            if got.opcode == CLOSE:
                break
        assert self.closed_by_server(timeout), "no EOF after the close frame"
        return got

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self.wait_readable(deadline - time.monotonic()):
                    return False
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True

    def shutdown(self) -> None:
        self.sock.close()


class CodecClient:
    """A WebSocket client on the project codec's client side (a real socket, a real handshake;
    tests/test_websocket_server.py): the codec checked against its own server, where `WsClient`
    checks it against an independent reading of the RFCs."""

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
