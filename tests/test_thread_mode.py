"""SWOOLE_THREAD: thread-local worker context, real concurrency for blocking handlers, and a
stress test that hammers shared state from every thread at once and checks exact totals.

These run on every build; on free-threaded CPython (3.13t) they run with no GIL at all.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from conftest import connect, recv_exact

pytestmark = pytest.mark.timeout(120)


def test_worker_context_is_per_thread(run_server):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            timer = srv.tick(50, lambda timer_id: None)
            srv.send(99999, b"x")  # fails: sets this thread's last error only
            emit("context", worker_id=worker_id, property_id=srv.worker_id, get_id=srv.get_worker_id(), tid=srv.worker_tid, native=threading.get_native_id(), pid=srv.worker_pid, error=srv.get_last_error(), timer=timer, thread=threading.current_thread().name)

        def on_receive(srv, fd, rid, data):
            other = int(data)
            emit("clear_other", ok=srv.clear_timer(other), worker_id=srv.worker_id)

        server.on("worker_start", on_worker_start)
        server.on("receive", on_receive)

    handle = run_server(setup, mode="thread", settings={"worker_num": 3})
    contexts = {e["worker_id"]: e for e in handle.wait_n("context", 3)}
    assert sorted(contexts) == [0, 1, 2]
    for worker_id, ctx in contexts.items():
        assert ctx["property_id"] == ctx["get_id"] == worker_id
        assert ctx["tid"] == ctx["native"] and ctx["pid"] == handle.pid
        assert ctx["error"] == 1005 and ctx["thread"] == f"worker-{worker_id}"
    assert len({ctx["tid"] for ctx in contexts.values()}) == 3
    assert len({ctx["timer"] for ctx in contexts.values()}) == 3  # timer ids unique in the process
    client = connect(handle.port)
    owner = None
    client.sendall(b"0")
    first = handle.wait("clear_other")
    owner = first["worker_id"]
    others = [w for w in contexts if w != owner]
    client.sendall(str(contexts[others[0]]["timer"]).encode())
    assert handle.wait("clear_other")["ok"] is False  # another thread's timer: not ours to clear
    client.sendall(str(contexts[owner]["timer"]).encode())
    assert handle.wait("clear_other")["ok"] is True
    assert handle.stop() == 0


def test_blocking_handlers_run_concurrently(run_server):
    """time.sleep in one worker thread must not hold the others (GIL or not)."""

    def setup(server, emit):
        active = {"now": 0, "peak": 0}
        lock = threading.Lock()

        def on_receive(srv, fd, rid, data):
            with lock:
                active["now"] += 1
                active["peak"] = max(active["peak"], active["now"])
            time.sleep(0.3)
            with lock:
                active["now"] -= 1
                peak = active["peak"]
            srv.send(fd, str(peak).encode())

        server.on("receive", on_receive)

    handle = run_server(setup, mode="thread", settings={"worker_num": 4, "dispatch_mode": 1})
    clients = [connect(handle.port) for _ in range(4)]
    for client in clients:
        client.sendall(b"work")
    peaks = [int(recv_exact(client, 1, timeout=10)) for client in clients]
    assert max(peaks) == 4  # all four sleeps overlapped
    assert handle.stop() == 0


def test_reload_restarts_threads_one_by_one_with_the_same_ids(run_server):
    def setup(server, emit):
        server.on("worker_start", lambda srv, wid: emit("worker_start", worker_id=wid, tid=srv.worker_tid))
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    handle = run_server(setup, mode="thread", settings={"worker_num": 2})
    before = {e["worker_id"]: e["tid"] for e in handle.wait_n("worker_start", 2)}
    handle.signal(signal.SIGUSR1)
    after = {e["worker_id"]: e["tid"] for e in handle.wait_n("worker_start", 2, timeout=20)}
    assert sorted(after) == [0, 1] and not set(after.values()) & set(before.values())
    client = connect(handle.port)
    client.sendall(b"ok")
    assert recv_exact(client, 2) == b"ok"
    assert handle.stop() == 0


def test_send_wait_is_base_only(run_server, mode):
    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            try:
                emit("send_wait", ok=srv.send_wait(fd, b"sync"))
            except Exception as exc:
                emit("send_wait", error=type(exc).__name__)

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    client.sendall(b"go")
    event = handle.wait("send_wait")
    if mode == "base":
        assert event["ok"] is True and recv_exact(client, 4) == b"sync"
    else:
        assert event["error"] == "ContextError"
    assert handle.stop() == 0


@pytest.mark.parametrize("workers", [4])
def test_concurrency_stress_exact_totals(run_server, workers):
    """Every worker thread at once: stats counters, the connection table, timers and
    cross-thread sends. Afterwards the totals must be exact, not approximately right."""
    clients_count, rounds, size = 40, 150, 32

    def setup(server, emit):
        timers = threading.local()

        def on_receive(srv, fd, rid, data):
            # shared-state reads from every thread
            assert srv.exist(fd) and srv.get_client_info(fd)["server_port"] == srv.port
            assert len(srv.get_client_list(0, 100)) >= 1
            # timers created and cleared per thread
            timer = srv.after(60_000, lambda: None)
            assert srv.clear_timer(timer) is True
            timers.count = getattr(timers, "count", 0) + 1
            command, _, rest = data.partition(b" ")
            if command == b"relay":
                target, _, payload = rest.partition(b" ")
                assert srv.send(int(target), payload)  # possibly to another thread's connection
                srv.send(fd, b"R")
            elif command == b"stats":
                emit("stats", stats=srv.stats())
            else:
                srv.send(fd, data)

        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd, worker_id=srv.worker_id))
        server.on("receive", on_receive)

    handle = run_server(setup, mode="thread", settings={"worker_num": workers})
    sinks_count = 8  # receive-only connections: the targets of cross-thread relays
    clients = [connect(handle.port, timeout=30) for _ in range(clients_count)]
    for _ in clients:
        handle.wait("connect")
    sinks = [connect(handle.port, timeout=30) for _ in range(sinks_count)]
    sink_fds = [handle.wait("connect")["fd"] for _ in sinks]
    errors: list[BaseException] = []
    relay_bytes = 0
    relayed = [0] * sinks_count

    def drive(index: int) -> None:
        sock = clients[index]
        try:
            for i in range(rounds):
                message = f"m{index:03d}-{i:05d}".encode().ljust(size, b".")
                sock.sendall(message)
                assert recv_exact(sock, size, timeout=30) == message
                if i % 10 == 0:
                    sock.sendall(f"relay {sink_fds[index % sinks_count]} X".encode())
                    assert recv_exact(sock, 1, timeout=30) == b"R"
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(clients_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors[:3]
    for index in range(clients_count):
        relayed[index % sinks_count] += len(range(0, rounds, 10))
        relay_bytes += len(f"relay {sink_fds[index % sinks_count]} X") * len(range(0, rounds, 10))
    for index, sock in enumerate(sinks):  # every relayed byte arrived, exactly once
        assert recv_exact(sock, relayed[index], timeout=10) == b"X" * relayed[index]
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
    # Other worker threads publish their counters within 20 ms of going idle (longer on a
    # loaded machine): ask until the totals are exactly what was sent. Lost or doubled
    # counts would never converge, so this still checks exact totals.
    echoes = clients_count * rounds
    probe = connect(handle.port)
    deadline = time.monotonic() + 10
    probes = 0
    while True:
        probe.sendall(b"stats")
        probes += 1
        stats = handle.wait("stats")["stats"]
        expected = {
            "request_count": echoes + sum(relayed) + probes,
            "total_recv_bytes": echoes * size + relay_bytes + probes * len(b"stats"),
            "total_send_bytes": echoes * size + 2 * sum(relayed),
        }
        if all(stats[key] == value for key, value in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {key: stats[key] for key in expected} == expected
    assert stats["accept_count"] == clients_count + sinks_count + 1 and stats["close_count"] == 0
    assert stats["connection_num"] == clients_count + sinks_count + 1
    for sock in clients + sinks:
        sock.close()
    assert handle.stop() == 0


def test_connections_spread_over_threads_and_cross_thread_close(run_server):
    def setup(server, emit):
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd, worker_id=srv.worker_id))

        def on_receive(srv, fd, rid, data):
            if data == b"?":
                srv.send(fd, f"{fd:08d}{srv.worker_id}{rid}".encode())
            else:
                srv.close(int(data))  # close a session that may belong to another thread

        server.on("receive", on_receive)

    handle = run_server(setup, mode="thread", settings={"worker_num": 2})
    clients = {}
    for _ in range(4):
        sock = connect(handle.port)
        sock.sendall(b"?")
        answer = recv_exact(sock, 10).decode()
        fd, worker_id, reactor_id = int(answer[:8]), int(answer[8]), int(answer[9])
        assert worker_id == reactor_id
        clients[fd] = (sock, worker_id)
    assert {w for _, w in clients.values()} == {0, 1}  # dispatch_mode 2 spreads by session
    victim = next(fd for fd, (_, w) in clients.items() if w == 1)
    sender = next(sock for sock, w in clients.values() if w == 0)
    sender.sendall(str(victim).encode())
    closed = handle.wait("close")
    assert closed["fd"] == victim and closed["worker_id"] == 1  # closed by its owner thread
    victim_sock = clients[victim][0]
    victim_sock.settimeout(5)
    assert victim_sock.recv(10) == b""
    assert handle.stop() == 0


def test_worker_pid_is_the_master_pid(run_server):
    def setup(server, emit):
        server.on("receive", lambda srv, fd, rid, data: emit("pids", pid=srv.get_worker_pid(), other=srv.get_worker_pid(1 - srv.worker_id), master=srv.get_master_pid(), manager=srv.get_manager_pid(), os_pid=os.getpid()))

    handle = run_server(setup, mode="thread", settings={"worker_num": 2})
    connect(handle.port).sendall(b"?")
    event = handle.wait("pids")
    assert event["pid"] == event["other"] == event["master"] == event["manager"] == event["os_pid"] == handle.pid
    assert handle.stop() == 0



def test_shutdown_racing_worker_start_releases_every_shared_view(run_server):
    """A shutdown while worker threads are still starting: the threads that see the stop
    before they run must still release their view of shared memory, or the segment cannot be
    closed (BufferError printed at exit, which the harness turns into a failure)."""

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            srv.shutdown()  # the first thread to start stops the server while the others start

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    for _ in range(8):
        handle = run_server(setup, mode="thread", settings={"worker_num": 4}, wait_for=None)
        code = handle.wait_exit(15)
        handle.drain()  # raises with the child's traceback if it failed
        assert code == 0 and handle.unraisable == []


def test_shared_state_read_from_every_thread_at_once_stays_closable():
    """Threads reading connection records, listing sessions and opening/closing stats views at
    the same moment. On free-threaded CPython, slicing one memoryview from several threads at
    once corrupts its export count (CPython gh-127716): the segment could then not be closed,
    or every view of it would read as released. SharedState makes its slices under a lock."""
    from threadswoole.state import shared as layout
    from threadswoole.state.counters import StatCounters

    state = layout.SharedState(stat_slots=8, worker_slots=4, acceptors=1, capacity=256)
    closed = None
    try:
        sessions = range(1, 65)
        for session in sessions:
            state.q[state.record_base(session) + layout.C_SESSION] = session
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def reader(slot: int) -> None:
            barrier.wait()
            try:
                for i in range(3000):
                    assert state.client_info(1 + i % 64, False) is not None
                    if i % 50 == 0:
                        assert state.live_sessions() == list(sessions)
                    if i % 100 == 0:
                        counters = StatCounters(state, slot)
                        counters.request += 1
                        counters.flush()
                        counters.release()
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(slot,)) for slot in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors[:3]
        assert state.stat_total(layout.S_REQUEST) == 4 * 30
    finally:
        closed = state.destroy()
    assert closed is True  # no slice outlived the segment: the export count is intact


# -- a worker id outlives its threads: nothing addressed to it is lost while it restarts ----
def test_send_message_to_a_starting_or_restarting_worker_waits_for_it(run_server):
    """Worker 0 sends a message every millisecond from its worker_start on, and restarts
    worker 1 twice meanwhile: every message reaches worker 1 exactly once, in order, and none
    is handled by an instance after its worker_stop (THREAD lost the ones sent in a gap)."""
    count = 300

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            emit("started", worker_id=worker_id, tid=srv.worker_tid)
            if worker_id != 0 or getattr(srv, "_test_sending", False):
                return
            srv._test_sending = True  # once, even if worker 0 itself restarts
            sent = []

            def send_one(timer_id):
                value = len(sent)
                sent.append(srv.send_message(value, 1))
                if value in (50, 150):
                    srv.stop(1)
                if len(sent) == count:
                    srv.clear_timer(timer_id)
                    emit("sent", all_true=all(r is True for r in sent))

            srv.tick(1, send_one)

        def on_pipe_message(srv, src, message):
            emit("got", value=message, tid=srv.worker_tid)
            if message == count - 1:
                emit("last")

        server.on("worker_start", on_worker_start)
        server.on("worker_stop", lambda srv, wid: emit("stopped", worker_id=wid, tid=srv.worker_tid))
        server.on("pipe_message", on_pipe_message)
        server.on("receive", lambda *args: None)

    handle = run_server(setup, mode="thread", settings={"worker_num": 2})
    handle.wait("last", timeout=30)
    assert handle.wait("sent")["all_true"]
    events = handle.drain(settle=0.2)
    got = [e for e in events if e["event"] == "got"]
    assert [e["value"] for e in got] == list(range(count))
    stopped_at = {}  # tid -> index in the event stream of its worker_stop
    for index, event in enumerate(events):
        if event["event"] == "stopped" and event["worker_id"] == 1:
            stopped_at[event["tid"]] = index
    assert len(stopped_at) >= 2  # worker 1 really restarted twice
    for index, event in enumerate(events):
        if event["event"] == "got" and event["tid"] in stopped_at:
            assert index < stopped_at[event["tid"]], "a message was handled after its worker stopped"
    assert handle.stop() == 0


def test_max_request_restart_keeps_connections_and_serves_new_ones(run_server):
    """worker_num=1, max_request=1: the only thread restarts after each request. A client
    connected before keeps its connection (handed to the new thread); one that connects
    during the restart is served, not reset."""

    def setup(server, emit):
        server.on("worker_start", lambda srv, wid: emit("worker_start", tid=srv.worker_tid))
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data + b"@%d" % srv.worker_tid))
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd))

    handle = run_server(setup, mode="thread", settings={"worker_num": 1, "max_request": 1})
    first_tid = handle.wait("worker_start")["tid"]
    kept = connect(handle.port)
    kept.sendall(b"one")
    assert recv_exact(kept, 3 + 1 + len(str(first_tid))) == b"one@%d" % first_tid
    tids = {first_tid}
    events = []
    for round_ in range(5):  # each request restarts the thread; connect while it restarts
        fresh = connect(handle.port)
        fresh.sendall(b"new%d" % round_)
        reply = fresh.recv(100)
        assert reply.startswith(b"new%d@" % round_), reply
        tids.add(int(reply.split(b"@")[1]))
        fresh.close()
        events += handle.drain()  # keep reading: a server blocked on a full event socket stalls
    kept.sendall(b"two")
    reply = kept.recv(100)
    assert reply.startswith(b"two@"), reply
    tids.add(int(reply.split(b"@")[1]))
    assert len(tids) >= 3  # served by several successive threads
    events += handle.drain()
    assert not [e for e in events if e["event"] == "close" and e["fd"] == 1]  # `kept` never closed
    assert handle.stop() == 0


def test_reload_moves_the_connections_to_the_new_threads(run_server):
    """THREAD reload: better than Swoole, which closes them: the old thread's connections go
    to the thread that replaces it; no close event, and each is served afterwards."""

    def setup(server, emit):
        server.on("worker_start", lambda srv, wid: emit("worker_start", worker_id=wid, tid=srv.worker_tid))
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, b"%d" % srv.worker_tid))
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd))

    handle = run_server(setup, mode="thread", settings={"worker_num": 2})
    before = {e["tid"] for e in handle.wait_n("worker_start", 2)}
    clients = [connect(handle.port) for _ in range(8)]
    for client in clients:
        client.sendall(b"x")
        assert int(client.recv(32)) in before
    handle.signal(signal.SIGUSR1)
    after = {e["tid"] for e in handle.wait_n("worker_start", 2, timeout=20)}
    assert not after & before
    for client in clients:
        client.sendall(b"y")
        assert int(client.recv(32)) in after
    assert not [e for e in handle.drain() if e["event"] == "close"]
    assert handle.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_socket_io_keeps_the_gil_with_several_worker_threads(run_server, workers):
    """THREAD mode on a GIL build, more than one loop thread: plain connections read and write
    through loop/held_io.py (no GIL hand-over for a syscall that cannot wait); one
    thread, or no GIL: os.read/os.write. Either way a 1 MiB answer (partial writes, the rest
    queued for EPOLLOUT) and a 300 KiB request (reads of the whole buffer) arrive whole."""

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            from threadswoole import _context
            from threadswoole.loop.held_io import gil_enabled

            host = _context.current().worker_obj.host
            emit("io", held=host.read_fd is not os.read and host.write_fd is not os.write, gil=gil_enabled())

        def on_receive(srv, fd, rid, data):
            got = srv.got = getattr(srv, "got", 0) + len(data)
            if got == 300 * 1024:
                srv.send(fd, bytes(range(256)) * 4096)

        server.on("worker_start", on_worker_start)
        server.on("receive", on_receive)

    handle = run_server(setup, mode="thread", settings={"worker_num": workers})
    seen = handle.wait_n("io", workers)
    assert all(e["held"] == (workers > 1 and e["gil"]) for e in seen)
    client = connect(handle.port)
    client.sendall(b"r" * (300 * 1024))
    assert recv_exact(client, 1024 * 1024, timeout=20) == bytes(range(256)) * 4096
    client.close()
    assert handle.stop() == 0
