"""Helpers of the end-to-end tests of `threadswoole.websocket.Server` (tests/test_websocket_server*.py).

* `WsClient`: a real-socket WebSocket client written from RFC 6455 / RFC 7692 with the
  standard library only (zlib for permessage-deflate), independent of the codec under test,
  that can also send what real clients refuse to (unmasked frames, reserved bits, bad lengths);
* `frame(...)`: one client frame as bytes, any field settable;
* `command_app(...)`: a server setup that echoes and obeys JSON commands sent as text
  messages (`{"cmd": "push", ...}`), reporting each result with emit(), so one server per
  mode serves a whole module (`module_ws_server`);
* `needs_websockets`: skip marker for tests that use the `websockets` library as a client.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import select
import socket
import struct
import time
import zlib
from typing import Any, Callable

import pytest

from conftest import MODES, ServerFactory

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10

needs_websockets = pytest.mark.skipif(importlib.util.find_spec("websockets") is None,
                                      reason="the websockets library is not installed (not a test extra)")


def ws_server_class() -> Any:
    from threadswoole import websocket

    return websocket.Server


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
    `compress`, it offers permessage-deflate and, if accepted, compresses what it sends."""

    def __init__(self, server: Any, *, path: str = "/", compress: bool = False, protocols: str | None = None,
                 extra: str = "", handshake: bool = True, rcvbuf: int | None = None, timeout: float = 10.0,
                 read_fd: bool = False) -> None:
        port = server if isinstance(server, int) else server.port
        self.events = None if isinstance(server, int) else server  # pumped while we wait
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.deflate: str | None = None
        self._compressor: Any = None
        self._decompressor: Any = None
        self._reset_decompressor = False
        self.fd: int | None = None
        if handshake:
            self.handshake(path, compress, protocols, extra)
            if read_fd and self.status == 101:
                self.fd = self.recv_message().json()["fd"]

    # -- the upgrade ----------------------------------------------------------------------
    def handshake(self, path: str = "/", compress: bool = False, protocols: str | None = None, extra: str = "",
                  key: str | None = None, version: str = "13") -> None:
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"]
        if protocols:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        if compress:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
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
                self._compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
                self._decompressor = zlib.decompressobj(-15)
                self._reset_decompressor = "server_no_context_takeover" in self.deflate

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
                self._decompressor = zlib.decompressobj(-15)
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


# -- the server ---------------------------------------------------------------------------------
def _status(srv: Any, fd: int) -> dict[str, Any]:
    import threadswoole

    info = srv.get_client_info(fd)
    return {"exist": srv.exist(fd), "established": srv.is_established(fd), "alias": srv.isEstablished(fd),
            "plain_exist": threadswoole.Server.exist(srv, fd),
            "websocket_status": info.get("websocket_status") if info else None}


def command_app(user_process: bool = False, on_open_push: bool = True) -> Callable[[Any, Callable[..., Any]], None]:
    """A setup: open pushes {"fd": fd}; text messages that are JSON commands are obeyed, other
    messages echoed with their opcode; delivered control frames are reported as "control";
    plain HTTP requests answer "plain <path>" and report push-to-self (a non-WebSocket fd)."""

    def setup(server: Any, emit: Callable[..., Any]) -> None:
        import threadswoole
        from threadswoole import Process
        from threadswoole.websocket.frame import CloseFrame

        process_box: list[Any] = []
        if user_process:
            def pusher(process: Any) -> None:
                while True:
                    message = json.loads(process.read())
                    ok = server.push(message["to"], message["data"].encode(), message.get("opcode", TEXT))
                    emit("process_push", ok=ok, error=server.get_last_error())

            process_box.append(Process(pusher, False, 2))
            server.add_process(process_box[0])

        def on_open(srv: Any, request: Any) -> None:
            emit("open", fd=request.fd, path=request.server["request_uri"], **_status(srv, request.fd))
            if on_open_push:
                srv.push(request.fd, json.dumps({"fd": request.fd}))

        def run(srv: Any, fd: int, command: dict[str, Any]) -> None:
            name = command["cmd"]
            if name == "push":
                data = command["data"].encode() if "hex" not in command else bytes.fromhex(command["hex"])
                ok = srv.push(command.get("to", fd), data, command.get("opcode", TEXT), command.get("finish", True))
                emit("pushed", ok=ok, error=srv.get_last_error())
            elif name == "push_many":
                results = [srv.push(command.get("to", fd), data.encode(), opcode, finish) for data, opcode, finish in command["frames"]]
                emit("pushed", ok=results, error=srv.get_last_error())
            elif name == "flood":  # push until it fails (a client that does not read)
                chunk, count = b"f" * command["size"], 0
                while count < command["limit"] and srv.push(command["to"], chunk, 2):
                    count += 1
                emit("flooded", count=count, error=srv.get_last_error())
            elif name == "status":
                emit("status", fd=command["fd"], **_status(srv, command["fd"]))
            elif name == "disconnect":
                target = command.get("fd", fd)
                ok = srv.disconnect(target, *command.get("args", []))
                emit("disconnected", ok=ok, error=srv.get_last_error(), after=_status(srv, target) if ok else None)
            elif name == "stats":
                emit("stats", stats=srv.stats())
            elif name == "task":
                emit("tasked", id=srv.task({"to": command["to"], "data": command["data"]}))
            elif name == "timer":
                def fire() -> None:
                    emit("timer_push", ok=srv.push(command["to"], command["data"].encode()))
                srv.after(command.get("ms", 1), fire)
            elif name == "process":
                process_box[0].write(json.dumps(command))
            elif name == "send_packed":  # a frame made by pack(), sent raw
                srv.send(fd, srv.pack(bytes.fromhex(command["hex"]), command["opcode"], command.get("finish", True)))
            else:
                emit("unknown", name=name)

        def on_message(srv: Any, frame_in: Any) -> None:
            if isinstance(frame_in, CloseFrame):
                emit("control", fd=frame_in.fd, opcode=frame_in.opcode, code=frame_in.code, reason=frame_in.reason,
                     data=frame_in.data.hex())
                return
            if frame_in.opcode in (PING, PONG):
                emit("control", fd=frame_in.fd, opcode=frame_in.opcode, data=frame_in.data.hex())
                return
            if frame_in.opcode == TEXT and frame_in.data[:8] == b'{"cmd": ':
                run(srv, frame_in.fd, json.loads(frame_in.data))
                return
            emit("message", fd=frame_in.fd, opcode=frame_in.opcode, size=len(frame_in.data), finish=frame_in.finish)
            srv.push(frame_in.fd, frame_in.data, frame_in.opcode)

        def on_request(request: Any, response: Any) -> None:
            uri = request.server["request_uri"]
            fd = request.fd
            target = int(request.get["to"]) if request.get and "to" in request.get else None
            info = server.get_client_info(fd)
            pushed_self = server.push(fd, b"x")
            emit("request", fd=fd, uri=uri, pushed_self=pushed_self, error=server.get_last_error(),
                 exist=server.exist(fd), websocket_status=info.get("websocket_status") if info else None)
            if target is not None:
                emit("request_push", ok=server.push(target, b"from http"))
            response.end(f"plain {uri}".encode())

        def on_task(srv: Any, task_id: int, src: int, data: Any) -> Any:
            ok = srv.push(data["to"], data["data"].encode())
            emit("task_push", ok=ok, error=srv.get_last_error(), task_worker=srv.task_worker)
            return "done"

        server.on("open", on_open)
        server.on("message", on_message)
        server.on("request", on_request)
        server.on("close", lambda srv, fd, reactor_id: emit("close", fd=fd))
        if server.setting.get("task_worker_num"):
            server.on("task", on_task)
            server.on("finish", lambda srv, task_id, data: emit("finished", data=data))

    return setup


def module_ws_server(setup: Callable[..., Any], settings: dict[str, Any] | None = None, *, modes: list[str] = MODES) -> Any:
    """A module-scoped fixture: a websocket.Server running `setup` in each of `modes`."""

    @pytest.fixture(scope="module", params=modes)
    def fixture(request: Any, tmp_path_factory: Any) -> Any:
        factory = ServerFactory(tmp_path_factory.mktemp("ws"))
        handle = factory(setup, mode=request.param, settings=dict(settings or {}), server_class=ws_server_class())
        handle.mode = request.param  # type: ignore[attr-defined]
        try:
            yield handle
        finally:
            factory.cleanup()

    return fixture


@pytest.fixture(autouse=True)
def fresh_events(request: Any) -> Any:
    """Import into a module with a module-scoped `server`: each test starts with no events
    left over from the one before (a "pushed" it never waited for, say)."""
    if "server" in request.fixturenames:
        request.getfixturevalue("server").drain()
    yield


def start_ws(run_server: Any, mode: str, settings: dict[str, Any] | None = None, setup: Callable[..., Any] | None = None) -> Any:
    """A function-scoped websocket.Server (for settings one test needs)."""
    return run_server(setup or command_app(), mode=mode, settings={"worker_num": 1, **(settings or {})},
                      server_class=ws_server_class())


def stats_of(handle: Any, client: WsClient) -> dict[str, Any]:
    client.command("stats")
    return handle.wait("stats")["stats"]


def settled(handle: Any, client: WsClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
    """stats() asked until `predicate` holds (counters of other threads arrive a little late)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = stats_of(handle, client)
        if predicate(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def tree_rss(handle: Any) -> int:
    total = 0
    for proc in handle.tree():
        try:
            total += proc.memory_info().rss
        except Exception:  # noqa: BLE001 - a process that just went
            pass
    return total
