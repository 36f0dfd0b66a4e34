"""SWOOLE_PROCESS: start order, faults that must not reach clients, dispatch, reload variants."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import threading
import time

import psutil
import pytest

from conftest import connect, recv_exact

pytestmark = pytest.mark.timeout(120)


def _report(server, emit):
    server.on("worker_start", lambda srv, wid: emit("worker_start", worker_id=wid, pid=os.getpid()))
    server.on("worker_error", lambda srv, wid, pid, code, signo: emit("worker_error", worker_id=wid, worker_pid=pid, signal=signo, role_pid=os.getpid()))
    server.on("worker_stop", lambda srv, wid: emit("worker_stop", worker_id=wid, pid=os.getpid()))


def _pid_echo(server, emit):
    """Answers each request with the worker's pid (10 bytes) so the test knows who served it."""
    _report(server, emit)
    server.on("receive", lambda srv, fd, rid, data: srv.send(fd, str(os.getpid()).encode().rjust(10)))


def _ask(client: socket.socket, timeout: float = 10.0) -> int:
    client.sendall(b"?")
    return int(recv_exact(client, 10, timeout))


def test_start_order_reactor_threads_and_single_threaded_children(run_server):
    handle = run_server(_pid_echo, mode="process", settings={"worker_num": 2, "reactor_num": 3})
    handle.wait_n("worker_start", 2)  # (after the first, the manager may not have forked the second yet)
    master = handle.process()
    children = master.children()
    assert len(children) == 1, "the master forks exactly one child: the manager"
    manager = children[0]
    workers = manager.children()
    assert len(workers) == 2
    assert master.num_threads() == 1 + 3  # main (accept) thread + reactor_num reactor threads
    assert manager.num_threads() == 1 and all(w.num_threads() == 1 for w in workers)
    assert handle.stop() == 0


def test_kill_9_worker_while_50_clients_talk_every_next_request_is_answered(run_server):
    handle = run_server(_pid_echo, mode="process", settings={"worker_num": 2, "reactor_num": 2})
    pids = {e["worker_id"]: e["pid"] for e in handle.wait_n("worker_start", 2)}
    clients = [connect(handle.port) for _ in range(50)]
    for client in clients:
        _ask(client)
    os.kill(pids[0], signal.SIGKILL)
    error = handle.wait("worker_error")
    assert error["worker_id"] == 0 and error["signal"] == signal.SIGKILL and error["role_pid"] != handle.pid
    replacement = handle.wait("worker_start", worker_id=0)["pid"]
    served = {_ask(client) for client in clients}  # every connection survived the crash
    assert served <= {replacement, pids[1]} and replacement in served
    assert handle.stop() == 0


def test_reload_while_50_clients_send_continuously_loses_nothing(run_server):
    handle = run_server(_pid_echo, mode="process", settings={"worker_num": 2, "reactor_num": 2})
    before = {e["pid"] for e in handle.wait_n("worker_start", 2)}
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "dropped": 0}
    lock = threading.Lock()
    seen_pids: set[int] = set()

    def talk() -> None:
        try:
            client = connect(handle.port)
        except OSError:
            with lock:
                counts["dropped"] += 1
            return
        while not stop.is_set():
            try:
                pid = _ask(client, timeout=10)
                with lock:
                    counts["ok"] += 1
                    seen_pids.add(pid)
            except (OSError, AssertionError, ValueError):
                with lock:
                    counts["failed"] += 1
                return
        client.close()

    threads = [threading.Thread(target=talk) for _ in range(50)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5.0
    time.sleep(1.0)
    handle.signal(signal.SIGUSR1)
    handle.wait_n("worker_start", 2, timeout=20)
    while time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert counts["failed"] == 0 and counts["dropped"] == 0
    assert counts["ok"] > 500
    assert seen_pids - before, "no request was served by a reloaded worker"
    assert handle.stop() == 0


def test_a_stuck_worker_does_not_stop_the_others_and_reload_replaces_it(run_server):
    def setup(server, emit):
        _report(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"hang":
                emit("hanging", worker_id=srv.worker_id)
                while True:  # an infinite loop in user code
                    pass
            srv.send(fd, str(srv.worker_id).encode())

        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 2, "max_wait_time": 1})
    handle.wait_n("worker_start", 2)
    by_worker: dict[int, list[socket.socket]] = {0: [], 1: []}
    while min(len(v) for v in by_worker.values()) < 2:
        client = connect(handle.port)
        client.sendall(b"?")
        by_worker[int(recv_exact(client, 1))].append(client)
    by_worker[0][0].sendall(b"hang")
    handle.wait("hanging")
    for _ in range(5):  # worker 1 keeps serving
        by_worker[1][1].sendall(b"?")
        assert recv_exact(by_worker[1][1], 1) == b"1"
    handle.signal(signal.SIGUSR1)  # the stuck worker cannot stop: killed after max_wait_time
    handle.wait("worker_start", worker_id=0, timeout=20)
    by_worker[0][1].sendall(b"?")
    assert recv_exact(by_worker[0][1], 1, timeout=10) == b"0"
    assert handle.stop() == 0


def test_a_message_cut_by_a_worker_crash_never_reaches_its_replacement_in_pieces(run_server):
    """Big packets are chunked over the pipe; killing the worker mid-message leaves orphan
    chunks for its replacement, which must drop them: every packet a worker reports is whole."""

    def setup(server, emit):
        _report(server, emit)

        def on_receive(srv, fd, rid, data):
            srv.send(fd, hashlib.sha256(data).digest())

        server.on("receive", on_receive)

    size = 1024 * 1024
    handle = run_server(setup, mode="process", settings={"worker_num": 1, "open_length_check": True, "package_length_type": "N", "package_body_offset": 4, "package_max_length": 4 * size})
    pid = handle.wait("worker_start")["pid"]
    client = connect(handle.port)
    digests = set()
    packets = []
    for i in range(12):
        body = os.urandom(size - 4)
        packets.append(struct.pack(">I", len(body)) + body)
        digests.add(hashlib.sha256(packets[-1]).digest())
    sender = threading.Thread(target=lambda: [client.sendall(p) for p in packets])
    sender.start()
    time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # somewhere in the middle of the stream
    sender.join(30)
    handle.wait("worker_start", timeout=20)
    client.settimeout(3)
    answers = []
    try:
        while True:
            answers.append(recv_exact(client, 32, timeout=3))
    except (AssertionError, socket.timeout, OSError):
        pass
    assert answers and all(answer in digests for answer in answers)  # nothing half-assembled
    final = struct.pack(">I", 3) + b"end"
    client.sendall(final)
    assert recv_exact(client, 32) == hashlib.sha256(final).digest()
    assert handle.stop() == 0


@pytest.mark.parametrize("dispatch_mode", [1, 2, 3, 4, 5])
def test_dispatch_modes(run_server, dispatch_mode):
    def setup(server, emit):
        _report(server, emit)
        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd, worker_id=srv.worker_id))
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd))

        def on_receive(srv, fd, rid, data):
            if data.startswith(b"bind"):
                srv.bind(fd, int(data.split()[1]))
            srv.send(fd, str(srv.worker_id).encode())

        server.on("receive", on_receive)

    workers = 3
    handle = run_server(setup, mode="process", settings={"worker_num": workers, "dispatch_mode": dispatch_mode, "reactor_num": 1})
    handle.wait_n("worker_start", workers)
    clients = [connect(handle.port) for _ in range(6)]
    served = []
    for client in clients:
        row = []
        for _ in range(6):
            client.sendall(b"?")
            row.append(int(recv_exact(client, 1)))
        served.append(row)
    connects = {e["fd"]: e["worker_id"] for e in handle.drain(0.3) if e["event"] == "connect"}
    if dispatch_mode in (1, 3):
        assert connects == {}  # stateless modes suppress connect/close
        if dispatch_mode == 1:
            assert len({w for row in served for w in row}) == workers  # round robin spreads every packet
    else:
        assert len(connects) == 6
        assert all(len(set(row)) == 1 for row in served)  # one connection, one worker
    if dispatch_mode == 4:
        assert len({row[0] for row in served}) == 1  # one client IP, one worker
        assert served[0][0] == 0x7F000001 % workers
    if dispatch_mode == 5:
        clients[0].sendall(b"bind 7")
        recv_exact(clients[0], 1)
        clients[0].sendall(b"?")
        assert int(recv_exact(clients[0], 1)) == 7 % workers
    if dispatch_mode == 2:
        assert sorted(connects) == sorted(connects) and all(connects[fd] == fd % workers for fd in connects)
    assert handle.stop() == 0


def test_dispatch_func_and_unsafe_events(run_server):
    def setup(server, emit):
        _report(server, emit)
        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd))
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, str(srv.worker_id).encode()))

    def route(server, fd, event_type, data):
        return 1 if data.startswith(b"to-one") else 0

    handle = run_server(setup, mode="process", settings={"worker_num": 2, "dispatch_func": route})
    handle.wait_n("worker_start", 2)
    client = connect(handle.port)
    client.sendall(b"to-one")
    assert recv_exact(client, 1) == b"1"
    client.sendall(b"other")
    assert recv_exact(client, 1) == b"0"
    assert handle.wait("connect")
    assert handle.stop() == 0

    unsafe = run_server(setup, mode="process", settings={"worker_num": 2, "dispatch_mode": 1, "enable_unsafe_event": True})
    connect(unsafe.port)
    assert unsafe.wait("connect")  # mode 1 + enable_unsafe_event delivers connect
    assert unsafe.stop() == 0


def test_reload_keeps_connections_and_a_second_reload_is_dropped(run_server):
    def setup(server, emit):
        _pid_echo(server, emit)
        server.on("receive", lambda srv, fd, rid, data: emit("reload", first=srv.reload(), second=srv.reload()) if data == b"reload" else srv.send(fd, str(os.getpid()).encode().rjust(10)))

    handle = run_server(setup, mode="process", settings={"worker_num": 2})
    before = {e["worker_id"]: e["pid"] for e in handle.wait_n("worker_start", 2)}
    client = connect(handle.port)
    _ask(client)
    client.sendall(b"reload")
    event = handle.wait("reload")
    assert event["first"] is True and event["second"] is False
    after = {e["worker_id"]: e["pid"] for e in handle.wait_n("worker_start", 2, timeout=20)}
    assert sorted(after) == [0, 1] and not set(after.values()) & set(before.values())
    assert _ask(client) in after.values()  # same connection, served by a new worker
    assert handle.stop() == 0


def test_reload_async_fires_worker_exit_and_max_request_keeps_the_client(run_server):
    def setup(server, emit):
        _report(server, emit)
        server.on("worker_exit", lambda srv, wid: emit("worker_exit", worker_id=wid, pid=os.getpid()))

        def on_worker_start(srv, wid):
            emit("worker_start", worker_id=wid, pid=os.getpid())
            srv.after(300, lambda: None)  # pending work the old worker finishes while draining

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, str(os.getpid()).encode().rjust(10)))

    handle = run_server(setup, mode="process", settings={"worker_num": 1, "reload_async": True, "max_request": 3})
    first = handle.wait("worker_start")["pid"]
    client = connect(handle.port)
    assert [_ask(client) for _ in range(3)] == [first] * 3
    second = handle.wait("worker_start")["pid"]  # max_request recycled it; the client stays
    assert second != first and _ask(client) == second
    handle.signal(signal.SIGUSR1)
    exit_event = handle.wait("worker_exit")
    assert exit_event["pid"] == second
    third = handle.wait("worker_start", timeout=20)["pid"]
    assert third not in (first, second)
    assert _ask(client) == third
    assert handle.stop() == 0


def test_stop_with_wait_event_starts_a_replacement_at_once(run_server):
    def setup(server, emit):
        _report(server, emit)

        def on_receive(srv, fd, rid, data):
            srv.after(400, lambda: emit("timer_done", pid=os.getpid()))
            emit("stop", ok=srv.stop(-1, True), status=srv.get_worker_status())
            srv.send(fd, b"k")

        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 1, "max_wait_time": 5})
    old = handle.wait("worker_start")["pid"]
    client = connect(handle.port)
    client.sendall(b"x")
    assert handle.wait("stop")["ok"] is True
    new = handle.wait("worker_start")["pid"]  # started before the old one finished
    assert new != old
    assert handle.wait("timer_done")["pid"] == old  # the old worker finished its pending timer
    handle.wait("worker_stop", pid=old)
    assert recv_exact(client, 1) == b"k"
    assert handle.stop() == 0


def test_worker_status_and_shared_connection_list(run_server):
    def setup(server, emit):
        _report(server, emit)

        def on_receive(srv, fd, rid, data):
            other = 1 - srv.worker_id
            emit("status", me=srv.get_worker_status(), other=srv.get_worker_status(other), unknown=srv.get_worker_status(7), clients=list(srv.connections), pid_other=srv.get_worker_pid(other))
            srv.send(fd, b"k")

        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 2})
    pids = {e["worker_id"]: e["pid"] for e in handle.wait_n("worker_start", 2)}
    clients = [connect(handle.port) for _ in range(4)]
    time.sleep(0.2)
    clients[0].sendall(b"?")
    recv_exact(clients[0], 1)
    status = handle.wait("status")
    assert status["me"] == 1 and status["other"] == 2 and status["unknown"] is False  # BUSY, IDLE
    assert len(status["clients"]) == 4  # PROCESS: every worker sees every connection
    assert status["pid_other"] in pids.values()
    assert handle.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="user/group need root")
def test_user_and_group_drop_privileges_in_workers(run_server):
    import pwd

    nobody = pwd.getpwnam("nobody")

    def setup(server, emit):
        server.on("receive", lambda *a: None)

    # the worker cannot reach the test's (root-only) event socket once it is 'nobody': look
    # at the processes instead
    handle = run_server(setup, mode="process", settings={"worker_num": 1, "user": "nobody"}, wait_for=None)
    deadline = time.monotonic() + 10
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline:
        workers = [p for p in handle.process().children(recursive=True) if p.ppid() != handle.pid]
        if workers and workers[0].uids().real == nobody.pw_uid:
            break
        time.sleep(0.05)
    assert workers and workers[0].uids().real == nobody.pw_uid and workers[0].gids().real == nobody.pw_gid
    assert psutil.Process(handle.pid).uids().real == 0  # the master stays root
    assert handle.stop() == 0


def test_send_is_atomic_per_call_when_two_workers_send_to_one_connection(run_server):
    """Swoole: concurrent sends from several processes to one connection never interleave."""
    size = 1024 * 1024

    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, bytes([48 + srv.worker_id]) * size))

    # round robin: consecutive requests of one connection go to different workers
    # (one request per line: TCP may deliver the six requests in one read)
    handle = run_server(setup, mode="process", settings={"worker_num": 2, "dispatch_mode": 1, "reactor_num": 1, "socket_buffer_size": 16 * size, "open_eof_split": True, "package_eof": b"\n"})
    client = connect(handle.port)
    client.sendall(b"?\n" * 6)
    data = recv_exact(client, 6 * size, timeout=30)
    blocks = [data[i : i + size] for i in range(0, len(data), size)]
    assert all(len(set(block)) == 1 for block in blocks)  # no block mixes two workers' bytes
    assert {block[:1] for block in blocks} == {b"0", b"1"}
    assert handle.stop() == 0


@pytest.mark.parametrize("discard", [True, False])
def test_discard_timeout_request_drops_data_of_a_connection_already_closed(run_server, discard):
    """dispatch_mode 1/3: data can reach a worker after its connection closed; with
    discard_timeout_request (the default) it is dropped instead of delivered."""

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            emit("receive", data=data.decode())
            if data == b"slow\n":
                time.sleep(0.5)  # meanwhile the client sends more and closes

        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 1, "dispatch_mode": 1, "discard_timeout_request": discard, "open_eof_split": True, "package_eof": b"\n"})
    client = connect(handle.port)
    client.sendall(b"slow\n")
    handle.wait("receive", data="slow\n")
    client.sendall(b"late\n")
    client.close()
    late = [e for e in handle.drain(1.5) if e["event"] == "receive" and e["data"] == "late\n"]
    assert bool(late) is (not discard)
    assert handle.stop() == 0


def test_requests_a_killed_worker_had_read_are_redelivered_once_and_in_order(run_server):
    """kill -9 while a worker holds five requests it read (one batch) but did not answer:
    its replacement answers all five, in order, exactly once."""

    def setup(server, emit):
        _report(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"slow\n":
                emit("slow", pid=os.getpid())
                time.sleep(1.5)
            srv.send(fd, data.upper())

        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 1, "open_eof_split": True, "package_eof": b"\n"})
    client = connect(handle.port)
    client.sendall(b"slow\na\nb\nc\nd\n")  # one read for the reactor: one batch for the worker
    victim = handle.wait("slow")["pid"]
    os.kill(victim, signal.SIGKILL)
    assert handle.wait("worker_error")["signal"] == signal.SIGKILL
    again = handle.wait("slow")["pid"]  # the event it was handling gets one second chance
    assert again != victim
    assert recv_exact(client, 13, timeout=15) == b"SLOW\nA\nB\nC\nD\n"
    client.settimeout(0.5)
    with pytest.raises(socket.timeout):
        client.recv(10)  # and nothing twice
    assert handle.stop() == 0


def test_a_request_that_kills_every_worker_is_dropped_after_the_second_death(run_server):
    def setup(server, emit):
        _report(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"poison\n":
                os.kill(os.getpid(), signal.SIGKILL)
            srv.send(fd, data.upper())

        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 1, "open_eof_split": True, "package_eof": b"\n"})
    client = connect(handle.port)
    client.sendall(b"poison\nafter\n")
    handle.wait_n("worker_error", 2, timeout=20)  # killed twice, then given up on
    assert recv_exact(client, 6, timeout=15) == b"AFTER\n"
    assert handle.stop() == 0

