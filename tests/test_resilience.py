"""Bad clients, failing callbacks and resource limits: the server keeps serving and leaks nothing."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from conftest import connect, echo, recv_closed, recv_exact, tree_resources

pytestmark = pytest.mark.timeout(120)


def _ping(port: int) -> None:
    client = connect(port)
    client.sendall(b"ping")
    assert recv_exact(client, 4) == b"ping"
    client.close()


def test_a_raising_callback_is_logged_counted_and_the_connection_stays(run_server, mode, tmp_path):
    log_file = str(tmp_path / "server.log")

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            if data == b"boom":
                raise ValueError("handler bug")
            if data == b"stats":
                emit("stats", errors=srv.stats()["callback_error_count"])
            srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "log_file": log_file})
    client = connect(handle.port)
    client.sendall(b"boom")
    time.sleep(0.1)
    client.sendall(b"after")
    assert recv_exact(client, 5) == b"after"  # same connection, still served
    client.sendall(b"stats")
    assert handle.wait("stats")["errors"] == 1
    assert handle.stop() == 0
    text = open(log_file).read()
    assert "uncaught exception in the 'receive' callback" in text and "ValueError: handler bug" in text


def test_system_exit_in_a_callback_restarts_the_worker(run_server):
    def setup(server, emit):
        server.on("worker_start", lambda srv, wid: emit("worker_start", worker_id=wid))

        def on_receive(srv, fd, rid, data):
            if data == b"exit":
                raise SystemExit(0)
            srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, settings={"worker_num": 2})
    handle.wait_n("worker_start", 2)
    client = connect(handle.port)
    client.sendall(b"exit")
    assert recv_closed(client)
    handle.wait("worker_start")
    _ping(handle.port)
    assert handle.stop() == 0


def test_clients_that_vanish(run_server, mode):
    def setup(server, emit):
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd))
        echo(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    # connect and go away at once
    for _ in range(5):
        connect(handle.port).close()
    # reset instead of a clean close, with data in flight
    rude = connect(handle.port)
    rude.sendall(b"x" * 1000)
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()
    handle.wait_n("close", 6)
    _ping(handle.port)
    assert handle.stop() == 0


def test_a_client_that_never_reads_hits_the_send_limit_and_others_are_served(run_server, mode):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            if data == b"flood":
                chunk = b"z" * 65536
                sent = 0
                while srv.send(fd, chunk):
                    sent += 1
                    if sent > 2000:
                        break
                emit("flooded", chunks=sent, error=srv.get_last_error())
            else:
                srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "socket_buffer_size": 1024 * 1024})
    slow = connect(handle.port)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"flood")
    event = handle.wait("flooded")
    assert event["error"] == 1008 and event["chunks"] < 2000
    for _ in range(3):
        _ping(handle.port)  # everybody else is unaffected
    slow.close()
    assert handle.stop() == 0


def test_max_conn_refuses_and_counts_the_excess(run_server, mode):
    limit = 10

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            srv.send(fd, data)
            if data == b"stats":
                emit("stats", stats=srv.stats())

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "max_conn": limit})
    clients = []
    served = refused = 0
    for _ in range(2 * limit):
        try:
            client = connect(handle.port)  # the refusal (a reset) may arrive before connect() returns
            client.sendall(b"hi")
            if recv_exact(client, 2, timeout=2) == b"hi":
                served += 1
                clients.append(client)
        except (ConnectionResetError, BrokenPipeError, AssertionError, socket.timeout):
            refused += 1
    assert served == limit and refused == limit
    clients[0].sendall(b"stats")
    stats = handle.wait("stats")["stats"]
    assert stats["abort_count"] == limit and stats["connection_num"] == limit
    for client in clients:
        client.close()
    time.sleep(0.2)
    _ping(handle.port)  # capacity comes back
    assert handle.stop() == 0


def test_running_out_of_file_descriptors_does_not_kill_the_server(run_server):
    def setup(server, emit):
        import resource

        def on_worker_start(srv, wid):
            import os

            used = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (used + 8, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        server.on("worker_start", on_worker_start)
        echo(server, emit)

    handle = run_server(setup, settings={"worker_num": 1})
    clients = [connect(handle.port) for _ in range(30)]  # more than the server can accept
    time.sleep(0.5)
    assert handle.process().is_running()
    for client in clients:
        client.close()
    time.sleep(0.3)
    deadline = time.monotonic() + 5
    while True:  # once fds are free again the back-off ends and new clients are served
        try:
            _ping(handle.port)
            break
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert handle.stop() == 0


def test_connect_close_cycles_leave_no_leaks(run_server, mode):
    handle = run_server(echo, mode=mode, settings={"worker_num": 2 if mode != "base" else 1})
    _ping(handle.port)
    time.sleep(0.3)
    baseline = tree_resources(handle)
    for i in range(1000):
        client = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
        if i % 2:
            client.sendall(b"ab")
            assert recv_exact(client, 2) == b"ab"
        client.close()
    deadline = time.monotonic() + 5
    while tree_resources(handle) != baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tree_resources(handle) == baseline
    assert handle.stop() == 0
