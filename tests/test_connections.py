"""Connections in a running server, in every mode: echo, sessions, close, info, lists (§17 10-20, §18.2)."""

from __future__ import annotations

import socket
import time

import pytest

from conftest import connect, echo, recv_closed, recv_exact

pytestmark = pytest.mark.timeout(60)


def test_echo_and_event_order(run_server, mode):
    def setup(server, emit):
        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd, reactor_id=rid))
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd))

        def on_receive(srv, fd, rid, data):
            emit("receive", fd=fd, data=data.decode(), type=type(data).__name__)
            srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    fd = handle.wait("connect")["fd"]
    assert isinstance(fd, int) and fd > 0
    client.sendall(b"hello")
    assert recv_exact(client, 5) == b"hello"
    received = handle.wait("receive")
    assert received == {**received, "fd": fd, "data": "hello", "type": "bytes"}
    client.close()
    assert handle.wait("close")["fd"] == fd
    assert handle.stop() == 0


def test_session_ids_are_never_reused(run_server, mode):
    def setup(server, emit):
        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd))
        echo(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "max_conn": 4})
    seen = []
    for _ in range(30):  # far more than max_conn slots: ids must still grow
        client = connect(handle.port)
        seen.append(handle.wait("connect")["fd"])
        client.sendall(b"x")
        recv_exact(client, 1)
        client.close()
    assert len(set(seen)) == len(seen)
    assert seen == sorted(seen)
    assert handle.stop() == 0


def test_server_close_fires_close_and_send_inside_close_fails_1003(run_server, mode):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            if data == b"close me":
                emit("closed", result=srv.close(fd), again=srv.close(fd), error=srv.get_last_error())

        def on_close(srv, fd, rid):
            emit("on_close", fd=fd, send=srv.send(fd, b"late"), error=srv.get_last_error(), exist=srv.exist(fd))

        server.on("receive", on_receive)
        server.on("close", on_close)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    client.sendall(b"close me")
    closed = handle.wait("closed")
    assert closed["result"] is True and closed["again"] is False
    event = handle.wait("on_close")
    assert event["send"] is False and event["error"] == 1003
    assert recv_closed(client)
    assert handle.stop() == 0


def test_late_send_to_a_closed_session_fails_and_never_reaches_a_new_connection(run_server, mode):
    """fd reuse: the OS reuses the socket fd at once; the session id must not follow it."""

    def setup(server, emit):
        state = {}

        def on_connect(srv, fd, rid):
            emit("connect", fd=fd, socket_fd=srv.get_client_info(fd)["socket_fd"])

        def on_receive(srv, fd, rid, data):
            if data.startswith(b"send-to "):
                target = int(data.split()[1])
                ok = srv.send(target, b"LEAK")
                emit("late_send", ok=ok, error=srv.get_last_error())
                ok = srv.send(99999, b"x")
                emit("never_existed", ok=ok, error=srv.get_last_error())
                state["done"] = True

        server.on("connect", on_connect)
        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    first = connect(handle.port)
    old = handle.wait("connect")
    first.close()
    time.sleep(0.05)
    second = connect(handle.port)
    new = handle.wait("connect")
    assert new["fd"] != old["fd"]
    second.sendall(f"send-to {old['fd']}".encode())
    late = handle.wait("late_send")
    assert late["ok"] is False and late["error"] in (1004, 1005)
    never = handle.wait("never_existed")
    assert never["ok"] is False and never["error"] == 1005
    second.settimeout(0.3)
    with pytest.raises(socket.timeout):
        second.recv(10)  # nothing leaked to the new connection
    assert handle.stop() == 0


def test_client_info_exist_and_closed_session(run_server, mode):
    def setup(server, emit):
        saved = {}

        def on_receive(srv, fd, rid, data):
            if data == b"info":
                info = srv.get_client_info(fd)
                saved["fd"] = fd
                emit("info", fd=fd, info=info, exist=srv.exist(fd), alias=srv.getClientInfo(fd) == info)
            elif data.startswith(b"ask "):
                old = int(data.split()[1])
                emit("after_close", exist=srv.exist(old), info=srv.get_client_info(old), error=srv.get_last_error(), ignored=srv.get_client_info(old, -1, True))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    client.sendall(b"info")
    event = handle.wait("info")
    info = event["info"]
    assert event["exist"] is True and event["alias"] is True
    for key in ("server_port", "server_fd", "socket_fd", "socket_type", "remote_port", "remote_ip", "reactor_id", "connect_time", "last_time", "last_recv_time", "last_send_time", "last_dispatch_time", "close_errno", "recv_queued_bytes", "send_queued_bytes"):
        assert key in info, key
    assert info["server_port"] == handle.port
    assert info["remote_ip"] == "127.0.0.1" and info["remote_port"] == client.getsockname()[1]
    assert isinstance(info["connect_time"], int) and isinstance(info["last_recv_time"], float)
    assert abs(info["connect_time"] - time.time()) < 5
    assert "uid" not in info
    client.close()
    time.sleep(0.1)
    other = connect(handle.port)
    other.sendall(f"ask {event['fd']}".encode())
    after = handle.wait("after_close")
    assert after["exist"] is False and after["info"] is False and after["error"] == 1004
    assert isinstance(after["ignored"], dict) and after["ignored"]["server_port"] == handle.port
    assert handle.stop() == 0


def test_invalid_session_arguments_raise(run_server, mode):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            results = {}
            for name, call in {"zero": lambda: srv.send(0, b"x"), "negative": lambda: srv.close(-3), "type": lambda: srv.send("1x", b"x") if False else srv.exist(1.5), "data": lambda: srv.send(fd, 12345)}.items():
                try:
                    call()
                    results[name] = "no error"
                except Exception as exc:
                    results[name] = type(exc).__name__
            emit("errors", **results)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    client.sendall(b"go")
    errors = handle.wait("errors")
    assert errors["zero"] == "ValueError" and errors["negative"] == "ValueError"
    assert errors["type"] == "TypeError" and errors["data"] == "TypeError"
    assert handle.stop() == 0


def test_client_list_pages_and_connections_iterator(run_server, mode):
    count = 250

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            pages, start = [], 0
            while True:
                page = srv.get_client_list(start, 100)
                if not page:
                    break
                pages.append(page)
                start = page[-1]
            errors = []
            try:
                srv.get_client_list(0, 101)
            except ValueError:
                errors.append("page_size")
            try:
                srv.connections[0]
            except TypeError:
                errors.append("index")
            emit("listed", pages=pages, length=len(srv.connections), iterated=list(srv.connections), alias=srv.connection_list(0, 5), errors=errors)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    clients = [connect(handle.port) for _ in range(count)]
    time.sleep(0.2)
    clients[0].sendall(b"list")
    event = handle.wait("listed")
    flat = [fd for page in event["pages"] for fd in page]
    assert len(flat) == count and flat == sorted(flat) and len(set(flat)) == count
    assert all(len(page) <= 100 for page in event["pages"])
    assert event["length"] == count and event["iterated"] == flat
    assert event["alias"] == flat[:5]
    assert event["errors"] == ["page_size", "index"]
    for client in clients:
        client.close()
    assert handle.stop() == 0


def test_bind_uid(run_server, mode):
    def setup(server, emit):
        fds = []

        def on_receive(srv, fd, rid, data):
            fds.append(fd)
            if len(fds) < 2:
                return
            first, second = fds[0], fds[1]
            results = {"bind": srv.bind(first, 7), "rebind": srv.bind(first, 8), "negative": srv.bind(second, -10)}
            try:
                srv.bind(first, 0)
            except ValueError:
                results["zero"] = "ValueError"
            results["uid"] = srv.get_client_info(first)["uid"]
            results["negative_uid"] = srv.get_client_info(second)["uid"]
            emit("bound", **results)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    a, b = connect(handle.port), connect(handle.port)
    a.sendall(b"1")
    time.sleep(0.05)
    b.sendall(b"2")
    result = handle.wait("bound")
    assert result["bind"] is True and result["rebind"] is False and result["negative"] is True
    assert result["zero"] == "ValueError"
    assert result["uid"] == 7 and result["negative_uid"] == 4294967286
    assert handle.stop() == 0


def test_stats_counts_and_keys(run_server, mode):
    keys = "start_time connection_num abort_count accept_count close_count worker_num task_worker_num user_worker_num idle_worker_num dispatch_count request_count response_count total_recv_bytes total_send_bytes pipe_packet_msg_id session_round min_fd max_fd worker_request_count worker_response_count worker_dispatch_count task_idle_worker_num tasking_num coroutine_num coroutine_peek_num".split()

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            srv.send(fd, data)
            if data == b"stats":
                emit("stats", stats=srv.stats())

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    for _ in range(3):
        c = connect(handle.port)
        c.sendall(b"abc")
        recv_exact(c, 3)
        c.close()
    time.sleep(0.2)
    client = connect(handle.port)
    client.sendall(b"stats")
    stats = handle.wait("stats")["stats"]
    assert set(keys) <= set(stats)
    assert all(isinstance(stats[k], int) for k in keys)
    assert stats["accept_count"] == 4 and stats["close_count"] == 3
    assert stats["accept_count"] - stats["close_count"] == stats["connection_num"] == 1
    assert stats["request_count"] == 4 and stats["worker_num"] == 1
    assert stats["total_recv_bytes"] == 9 + 5
    assert stats["worker_request_count"] == 4
    if mode != "process":  # (a PROCESS reactor thread writes, and counts, the sends a little later)
        # the fast path's writes are counted when the totals are read (StatCounters.settle):
        # the callback's own send, made before stats(), is in them
        assert stats["response_count"] == stats["worker_response_count"] == 4
        assert stats["total_send_bytes"] == 9 + 5
    assert abs(stats["start_time"] - time.time()) < 30
    assert handle.stop() == 0


def test_a_client_that_saw_the_close_finds_it_counted(run_server, mode):
    """The server does its books before it closes the socket: once a peer has read the EOF,
    another worker's stats() no longer counts the closed connection and exist() is False.
    Each client half-closes and waits for the server's close, as the stress suite's probes do."""

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            if data == b"fd":
                srv.send(fd, f"{fd}\n".encode())
            else:  # b"check <fd>"
                closed_fd = int(data.split()[1])
                srv.send(fd, f"{srv.stats()['connection_num']} {int(srv.exist(closed_fd))}\n".encode())

        server.on("receive", on_receive)

    def ask(request: bytes) -> bytes:
        client = connect(handle.port)
        client.sendall(request)
        answer = b""
        while not answer.endswith(b"\n"):
            answer += client.recv(64)
        client.shutdown(socket.SHUT_WR)
        assert client.recv(64) == b""  # the server's close
        client.close()
        return answer.strip()

    handle = run_server(setup, mode=mode, settings={"worker_num": 2})
    answers = [ask(b"check " + ask(b"fd")) for _ in range(60)]
    assert set(answers) == {b"1 0"}, answers
    assert handle.stop() == 0


def test_send_accepts_str_bytearray_memoryview(run_server, mode):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            srv.send(fd, "é")
            srv.send(fd, bytearray(b"ba"))
            srv.send(fd, memoryview(b"mv"))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    client.sendall(b"go")
    assert recv_exact(client, 6) == "é".encode() + b"bamv"
    assert handle.stop() == 0


def test_large_send_arrives_intact(run_server, mode):
    size = 10 * 1024 * 1024

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            payload = bytes(range(256)) * (size // 256)
            emit("sent", ok=srv.send(fd, payload))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "buffer_output_size": 16 * 1024 * 1024, "socket_buffer_size": 16 * 1024 * 1024})
    client = connect(handle.port)
    client.sendall(b"go")
    data = recv_exact(client, size, timeout=30)
    assert handle.wait("sent")["ok"] is True
    assert data == bytes(range(256)) * (size // 256)
    assert handle.stop() == 0


def test_send_over_buffer_output_size_is_1202(run_server, mode):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            limit = srv.setting["buffer_output_size"]
            emit("big", ok=srv.send(fd, b"x" * (limit + 1)), error=srv.get_last_error(), exact=srv.send(fd, b"y" * limit))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "buffer_output_size": 4096})
    client = connect(handle.port)
    client.sendall(b"go")
    event = handle.wait("big")
    assert event["ok"] is False and event["error"] == 1202 and event["exact"] is True
    assert recv_exact(client, 4096) == b"y" * 4096
    assert handle.stop() == 0
