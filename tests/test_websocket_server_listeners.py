"""websocket.Server end to end, listeners (seed 003: a port added to a WebSocket server
inherits its protocol; seed 004 "WebSocket 服务监听"): WebSocket on an inherited TCP port and
on a Unix-socket port, per-port settings (a subprotocol of its own), a raw TCP port next to
them, a push from a raw port's callback to a WebSocket client, and a reload, in every mode."""

from __future__ import annotations

import os
import signal
import socket

import pytest

import threadswoole
from websocket_server_helpers import BINARY, WsClient, command_app, ws_server_class

pytestmark = pytest.mark.timeout(60)


def _setup(unix_path: str):
    def setup(server, emit):
        command_app()(server, emit)
        server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)  # inherits WebSocket
        own = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        own.set({"websocket_subprotocol": "port-two"})
        raw = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        raw.set({"open_websocket_protocol": False, "open_http_protocol": False})

        def on_receive(srv, fd, reactor_id, data):
            target = int(data.decode())
            srv.send(fd, b"pushed=%r" % (srv.push(target, b"from a raw port"),))

        raw.on("receive", on_receive)
        server.add_listener(unix_path, 0, threadswoole.SWOOLE_SOCK_UNIX_STREAM)

    return setup


def test_websocket_on_added_ports_a_unix_socket_and_a_raw_port(run_server, mode, tmp_path):
    unix_path = str(tmp_path / "ws.sock")
    handle = run_server(_setup(unix_path), mode=mode, settings={"worker_num": 1}, server_class=ws_server_class())
    main_port, inherited, own, raw_port = handle.ports[:4]
    for port in (main_port, inherited):
        client = WsClient(handle, port=port, protocols="chat", read_fd=True)
        assert client.status == 101 and "sec-websocket-protocol" not in client.headers
        client.send(b"on port %d" % port)
        assert client.recv_message().data == b"on port %d" % port
        client.shutdown()
    client = WsClient(handle, port=own, protocols="port-two", read_fd=True)
    assert client.headers.get("sec-websocket-protocol") == "port-two"
    with socket.create_connection(("127.0.0.1", raw_port), timeout=10) as raw:
        raw.sendall(str(client.fd).encode())
        assert raw.recv(4096) == b"pushed=True"
    assert client.recv_message().data == b"from a raw port"
    client.shutdown()
    assert os.path.exists(unix_path)
    unix = WsClient(handle, unix=unix_path, read_fd=True)
    assert unix.status == 101
    unix.send(b"over unix", BINARY)
    assert unix.recv_message().data == b"over unix"
    unix.shutdown()
    assert handle.stop() == 0


# -- a reload -------------------------------------------------------------------------------------
def test_after_a_reload_handshakes_plain_requests_and_kept_connections_are_served(run_server, mode):
    def setup(server, emit):
        command_app()(server, emit)
        server.on("worker_start", lambda srv, worker_id: emit("started", worker_id=worker_id, pid=os.getpid()))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "max_wait_time": 1}, server_class=ws_server_class())
    handle.wait("started")
    kept = WsClient(handle, read_fd=True)
    handle.signal(signal.SIGUSR1)  # reload the event workers
    handle.wait("started", timeout=15)
    fresh = WsClient(handle, read_fd=True)  # a new worker answers the handshake
    assert fresh.status == 101
    fresh.send(b"after the reload")
    assert fresh.recv_message().data == b"after the reload"
    with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as plain:
        plain.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := plain.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"plain /after")
    if mode == "base":  # the worker owned its connections: they went with it
        assert kept.closed_by_server()
    else:  # a PROCESS reactor thread / the THREAD acceptor keeps them for the new worker
        fresh.command("push", to=kept.fd, data="to a kept connection")
        assert handle.wait("pushed")["ok"] is True
        assert kept.recv_message().data == b"to a kept connection"
    for client in (kept, fresh):
        client.shutdown()
    assert handle.stop() == 0
