"""Worker supervision: respawn after kill -9, max_request, reload, stop, shutdown, cross-worker calls."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from conftest import connect, echo, recv_closed, recv_exact

pytestmark = pytest.mark.timeout(90)


def _report_workers(server, emit):
    def on_worker_start(srv, worker_id):
        # a worker instance: its pid, or its native thread id in THREAD mode
        emit("worker_start", worker_id=worker_id, worker_pid=srv.worker_pid, pid=srv.worker_tid or os.getpid(), process=os.getpid(), task=srv.task_worker, get_worker_id=srv.get_worker_id())

    def on_worker_stop(srv, worker_id):
        emit("worker_stop", worker_id=worker_id, pid=srv.worker_tid or os.getpid())

    def on_worker_error(srv, worker_id, worker_pid, exit_code, signo):
        emit("worker_error", worker_id=worker_id, worker_pid=worker_pid, exit_code=exit_code, signal=signo, role_pid=os.getpid())

    server.on("worker_start", on_worker_start)
    server.on("worker_stop", on_worker_stop)
    server.on("worker_error", on_worker_error)
    server.on("manager_start", lambda srv: emit("manager_start", pid=os.getpid()))
    server.on("start", lambda srv: emit("start", master_pid=srv.master_pid, manager_pid=srv.manager_pid, pid=os.getpid()))


def _worker_pids(handle, count, timeout=15):
    starts = handle.wait_n("worker_start", count, timeout)
    return {event["worker_id"]: event["pid"] for event in starts}


def test_worker_start_fires_once_per_worker_with_distinct_ids(run_server, mode):
    def setup(server, emit):
        _report_workers(server, emit)
        echo(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 3})
    pids = _worker_pids(handle, 3)
    assert sorted(pids) == [0, 1, 2]
    assert len(set(pids.values())) == 3 and handle.pid not in pids.values()
    start = handle.wait("start")
    assert start["master_pid"] == handle.pid
    manager = handle.wait("manager_start")["pid"]
    if mode in ("base", "thread"):
        # BASE: the master is the manager; THREAD: the manager is a thread of the master
        assert start["manager_pid"] == handle.pid == manager
    else:
        assert start["manager_pid"] == manager != handle.pid
    assert handle.stop() == 0
    stopped = sorted(e["worker_id"] for e in handle.drain(0.2) if e["event"] == "worker_stop")
    assert stopped == [0, 1, 2]


class _LoopKiller(BaseException):
    """Escapes the reactor's exception handling: the worker thread's loop dies."""


def test_killed_worker_is_respawned_with_the_same_id_and_worker_error_fires(run_server, mode):
    def setup(server, emit):
        _report_workers(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"die":
                raise _LoopKiller()
            srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2})
    pids = _worker_pids(handle, 2)
    manager = handle.wait("manager_start")["pid"]
    if mode == "thread":
        # A thread cannot be killed -9: make its loop die instead, on whichever worker
        # thread the connection landed, and check that one comes back.
        client = connect(handle.port)
        client.sendall(b"die")
        error = handle.wait("worker_error")
        assert error["signal"] == 0 and error["worker_pid"] == handle.pid and error["role_pid"] == manager
        assert handle.wait("worker_start", worker_id=error["worker_id"])["pid"] != pids[error["worker_id"]]
        client = connect(handle.port)
        client.sendall(b"still here")
        assert recv_exact(client, 10) == b"still here"
        assert handle.stop() == 0
        return
    os.kill(pids[1], signal.SIGKILL)
    error = handle.wait("worker_error")
    assert error["worker_id"] == 1 and error["worker_pid"] == pids[1] and error["signal"] == signal.SIGKILL
    assert error["role_pid"] == manager  # worker_error runs in the manager
    restarted = handle.wait("worker_start", worker_id=1)
    assert restarted["pid"] != pids[1]
    client = connect(handle.port)
    client.sendall(b"still here")
    assert recv_exact(client, 10) == b"still here"
    assert handle.stop() == 0


def test_max_request_recycles_the_worker(run_server, mode):
    def setup(server, emit):
        _report_workers(server, emit)

        def on_receive(srv, fd, rid, data):
            srv.send(fd, str(srv.worker_tid or os.getpid()).encode().ljust(10))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "max_request": 3})
    first = handle.wait("worker_start")
    seen = []
    for _ in range(3):
        client = connect(handle.port)
        client.sendall(b"x")
        seen.append(int(recv_exact(client, 10)))
        client.close()
    assert seen == [first["pid"]] * 3
    handle.wait("worker_stop", worker_id=0)
    second = handle.wait("worker_start", worker_id=0)
    assert second["pid"] != first["pid"]
    assert not [e for e in handle.drain() if e["event"] == "worker_error"]
    client = connect(handle.port)
    client.sendall(b"x")
    assert int(recv_exact(client, 10)) == second["pid"]
    assert handle.stop() == 0


def test_reload_restarts_every_worker_and_base_mode_closes_their_connections(run_server):
    def setup(server, emit):
        _report_workers(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"reload":
                emit("reload", first=srv.reload(), second=srv.reload(), only_task=srv.reload(True))
            else:
                srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, settings={"worker_num": 2})
    before = _worker_pids(handle, 2)
    idle = connect(handle.port)
    idle.sendall(b"ping")
    assert recv_exact(idle, 4) == b"ping"
    trigger = connect(handle.port)
    trigger.sendall(b"reload")
    event = handle.wait("reload")
    assert event["first"] is True and event["second"] is False and event["only_task"] is False
    after = _worker_pids(handle, 2)
    assert sorted(after) == [0, 1]
    assert not set(after.values()) & set(before.values())
    assert recv_closed(idle)  # BASE: connections live in the workers
    client = connect(handle.port)
    client.sendall(b"again")
    assert recv_exact(client, 5) == b"again"
    assert handle.stop() == 0


def test_sigusr1_reloads_and_sigterm_shuts_down(run_server, mode):
    def setup(server, emit):
        _report_workers(server, emit)
        server.on("shutdown", lambda srv: emit("shutdown"))
        echo(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2})
    before = _worker_pids(handle, 2)
    handle.signal(signal.SIGUSR1)
    after = _worker_pids(handle, 2)
    assert not set(after.values()) & set(before.values())
    handle.signal(signal.SIGTERM)
    assert handle.wait_exit() == 0
    handle.wait("shutdown")
    assert handle.wait("__returned__")["result"] is True
    if mode != "thread":
        for pid in after.values():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_shutdown_from_worker_start_returns_true_after_on_shutdown(run_server, mode):
    def setup(server, emit):
        server.on("worker_start", lambda srv, wid: emit("stopping", result=srv.shutdown()))
        server.on("shutdown", lambda srv: emit("shutdown"))
        echo(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, wait_for=None)
    assert handle.wait("stopping")["result"] is True
    assert handle.wait_exit() == 0
    events = [e["event"] for e in handle.drain(0.2)]
    assert events.index("shutdown") < events.index("__returned__")


def test_single_process_reload_restarts_the_inline_worker(run_server):
    def setup(server, emit):
        _report_workers(server, emit)
        echo(server, emit)

    handle = run_server(setup, settings={"worker_num": 1})
    first = handle.wait("worker_start")
    assert first["pid"] == handle.pid  # worker_num = 1: no fork, the master is the worker
    client = connect(handle.port)
    handle.signal(signal.SIGUSR1)
    handle.wait("worker_stop")
    again = handle.wait("worker_start")
    assert again["worker_id"] == 0
    assert recv_closed(client)
    client = connect(handle.port)
    client.sendall(b"ok")
    assert recv_exact(client, 2) == b"ok"
    assert handle.stop() == 0


def test_stop_current_worker_restarts_it(run_server, mode):
    def setup(server, emit):
        _report_workers(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"stop":
                emit("stop", ok=srv.stop(), unknown=srv.stop(99))
            else:
                srv.send(fd, data)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2})
    pids = _worker_pids(handle, 2)
    client = connect(handle.port)
    client.sendall(b"stop")
    event = handle.wait("stop")
    assert event["ok"] is True and event["unknown"] is False
    stopped = handle.wait("worker_stop")
    restarted = handle.wait("worker_start", worker_id=stopped["worker_id"])
    assert restarted["pid"] != pids[stopped["worker_id"]]
    assert not [e for e in handle.drain() if e["event"] == "worker_error"]
    assert handle.stop() == 0


def test_cross_worker_send_and_pipe_message(run_server, mode):
    """§18.1: a worker can send to a session another worker owns; send_message reaches a worker."""

    def setup(server, emit):
        def on_connect(srv, fd, rid):
            emit("connect", fd=fd, worker_id=srv.worker_id)

        def on_receive(srv, fd, rid, data):
            command, _, rest = data.partition(b" ")
            if command == b"relay":
                target, _, message = rest.partition(b" ")
                emit("relayed", ok=srv.send(int(target), message), worker_id=srv.worker_id)
            elif command == b"message":
                emit("message_sent", ok=srv.send_message({"hello": [1, 2]}, int(rest)))

        def on_pipe_message(srv, src, message):
            emit("pipe_message", src=src, message=message, worker_id=srv.worker_id)

        server.on("connect", on_connect)
        server.on("receive", on_receive)
        server.on("pipe_message", on_pipe_message)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "enable_reuse_port": mode == "base"})
    clients = {}
    deadline = time.monotonic() + 20
    while len(clients) < 2 and time.monotonic() < deadline:
        client = connect(handle.port)
        event = handle.wait("connect")
        if event["worker_id"] not in clients:
            clients[event["worker_id"]] = (client, event["fd"])
        else:
            client.close()
    assert len(clients) == 2, "the kernel never spread connections over both workers"
    (sock0, fd0), (sock1, fd1) = clients[0], clients[1]
    sock0.sendall(f"relay {fd1} across".encode())
    assert handle.wait("relayed")["ok"] is True
    assert recv_exact(sock1, 6) == b"across"
    sock1.sendall(b"message 0")
    assert handle.wait("message_sent")["ok"] is True
    message = handle.wait("pipe_message")
    assert message["src"] == 1 and message["worker_id"] == 0 and message["message"] == {"hello": [1, 2]}
    assert handle.stop() == 0


@pytest.mark.parametrize("mode", ["base", "thread"])
def test_connections_of_a_worker_that_died_are_closed_and_counted(run_server, mode):
    """BASE: a worker killed -9 cannot retire its sessions, the manager does. THREAD: a worker
    thread whose loop dies closes its connections. Either way no client hangs and the counts
    (connection_num, exist) come back to the truth."""

    def setup(server, emit):
        _report_workers(server, emit)

        def on_receive(srv, fd, rid, data):
            if data == b"die":
                raise _LoopKiller()
            if data == b"stats":
                emit("stats", connections=srv.stats()["connection_num"], exist=[srv.exist(f) for f in range(1, 40)], worker_id=srv.worker_id)
                return
            srv.send(fd, str(srv.worker_id).encode())

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "enable_reuse_port": mode == "base"})
    pids = _worker_pids(handle, 2)
    by_worker: dict[int, list] = {0: [], 1: []}
    deadline = time.monotonic() + 20
    while min(len(v) for v in by_worker.values()) < 3 and time.monotonic() < deadline:
        client = connect(handle.port)
        client.sendall(b"?")
        by_worker[int(recv_exact(client, 1))].append(client)
    assert min(len(v) for v in by_worker.values()) >= 3
    victims = by_worker[1]
    if mode == "base":
        os.kill(pids[1], signal.SIGKILL)
    else:
        victims[0].sendall(b"die")
    handle.wait("worker_error", worker_id=1)
    for client in victims:
        assert recv_closed(client)  # nobody is left hanging
    survivor = by_worker[0][0]
    expected = sum(len(v) for v in by_worker.values()) - len(victims)
    for _ in range(50):  # the clean-up is asynchronous (the manager reaps, the thread unwinds)
        survivor.sendall(b"stats")
        stats = handle.wait("stats")
        if stats["connections"] == expected:
            break
        time.sleep(0.1)
    assert stats["connections"] == expected
    assert sum(stats["exist"]) == expected
    assert handle.stop() == 0


def test_shutdown_at_once_from_every_worker_is_a_graceful_stop(run_server, mode):
    """A worker may call shutdown() before the master has finished starting (PROCESS: its
    reactor threads, its listeners); the master's SIGTERM must wait for its handler, not kill it."""

    def setup(server, emit):
        server.on("worker_start", lambda srv, wid: emit("stopping", result=srv.shutdown()))
        server.on("shutdown", lambda srv: emit("shutdown"))
        echo(server, emit)

    settings = {"worker_num": 4, "reactor_num": 8} if mode == "process" else {"worker_num": 4}
    handle = run_server(setup, mode=mode, settings=settings, wait_for=None)
    assert handle.wait("stopping")["result"] is True
    assert handle.wait_exit() == 0
    assert "shutdown" in [e["event"] for e in handle.drain(0.2)]


def test_a_stop_sent_to_a_worker_whose_mailbox_is_full_still_arrives(run_server):
    """BASE: the manager tells a worker to stop with a message in its mailbox. A busy worker's
    mailbox may be full (another worker sent it more than it has read yet); the stop
    must wait for room, not be dropped (the worker was killed after max_wait_time instead,
    without its worker_stop). Between the two ends of a socketpair the limit is the sender's
    buffer (messages.SOCKET_BUFFER, doubled by the kernel): 12 MiB in flight fill it."""
    import socket

    gate = socket.create_server(("127.0.0.1", 0))
    gate_port = gate.getsockname()[1]

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            if worker_id == 1:  # busy in a callback: reads nothing from its mailbox meanwhile
                with socket.create_connection(("127.0.0.1", gate_port)) as held:
                    emit("busy")
                    held.recv(1)
            else:  # fills worker 1's mailbox
                srv.send_message(b"x" * (12 << 20), 1)
                srv.after(1, lambda: emit("filled"))  # (the loop has flushed what fits by then)

        server.on("worker_start", on_worker_start)
        server.on("pipe_message", lambda srv, src, message: None)
        server.on("worker_stop", lambda srv, worker_id: emit("worker_stop", worker_id=worker_id))
        echo(server, emit)

    with gate:
        handle = run_server(setup, mode="base", settings={"worker_num": 2, "max_wait_time": 1}, wait_for=None)
        gate.settimeout(10)
        held, _ = gate.accept()
        with held:
            handle.wait("busy")
            handle.wait("filled")
            handle.signal(signal.SIGTERM)
            handle.wait("worker_stop", worker_id=0)  # the manager has sent both stops by now
            held.sendall(b"!")  # worker 1 goes back to its loop and reads its mailbox
            assert handle.wait_exit() == 0
    assert [e for e in handle.drain() if e["event"] == "worker_stop" and e["worker_id"] == 1]


def test_a_send_to_a_connection_of_a_draining_base_worker_fails_at_the_call(run_server):
    """BASE, reload_async: a worker draining for the reload keeps its connections but no longer
    reads its mailbox (its replacement does), so another worker's send() to one of them cannot
    reach it. It must return False with 1003 (closing) at the call, not True for bytes the
    replacement then drops; the draining worker itself still serves the connection."""

    def setup(server, emit):
        _report_workers(server, emit)

        def on_receive(srv, fd, rid, data):
            text = data.decode()
            if text == "who":
                emit("who", fd=fd, worker_id=srv.worker_id)
            elif text == "reload":
                emit("reload", result=srv.reload())
            elif text.startswith("push "):
                ok = srv.send(int(text.split()[1]), b"pushed")
                emit("push", result=ok, error=srv.get_last_error(), worker_id=srv.worker_id)
            else:
                srv.send(fd, data)

        server.on("receive", on_receive)

    settings = {"worker_num": 2, "reload_async": True, "max_wait_time": 10, "enable_reuse_port": True}
    handle = run_server(setup, settings=settings)
    _worker_pids(handle, 2)
    clients: dict[int, tuple] = {}  # worker id -> (socket, fd): one connection on each worker
    deadline = time.monotonic() + 20
    while len(clients) < 2 and time.monotonic() < deadline:
        sock = connect(handle.port)
        sock.sendall(b"who")
        who = handle.wait("who")
        if who["worker_id"] in clients:
            sock.close()
        else:
            clients[who["worker_id"]] = (sock, who["fd"])
    assert len(clients) == 2, "the kernel never gave a connection to both workers"
    (target, target_fd), (pusher, _) = clients[0], clients[1]
    pusher.sendall(b"reload")
    assert handle.wait("reload")["result"] is True
    _worker_pids(handle, 2)  # both replacements started: both old workers have marked and left their mailboxes
    pusher.sendall(f"push {target_fd}".encode())
    push = handle.wait("push")
    assert (push["result"], push["error"]) == (False, 1003)
    target.sendall(b"still")  # the draining worker still serves its own connection
    assert recv_exact(target, 5) == b"still"
    target.close()
    pusher.close()
    assert handle.stop() == 0
