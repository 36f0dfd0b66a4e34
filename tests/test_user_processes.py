"""User processes (`add_process`, contract §11, §16, seed 000/002) and messaging between every
kind of worker (`send_message`, §17 item 34), in every mode."""

from __future__ import annotations

import os
import threading
import time

import pytest

from conftest import connect, recv_exact
from task_helpers import command, parked, report_workers, run_actions, starts, wait_until
from threadswoole import SWOOLE_BASE, Process, Server, StateError

pytestmark = pytest.mark.timeout(90)


def test_add_process_arguments_and_phase():
    server = Server("127.0.0.1", 0, SWOOLE_BASE)
    first, second = Process(parked), Process(parked)
    assert server.add_process(first) == 0 and first.id == 0
    assert server.addProcess(second) == 1 and second.id == 1  # the Swoole spelling (§15)
    with pytest.raises(TypeError):
        server.add_process(lambda p: None)
    with pytest.raises(ValueError):
        server.add_process(first)
    server.ports[0].close()


def _late_add(server, emit):
    def on_worker_start(srv, worker_id):
        try:
            srv.add_process(Process(parked))
        except StateError:
            emit("late_add", error="StateError")  # init-only (§17 item 6)

    server.on("worker_start", on_worker_start)


def test_the_seed_broadcast_example(run_server, mode):
    """Seed 000/002: a user process reads its exportSocket() and sends each message to every
    connection; workers write to the same Process's socket. As written, in every mode."""

    def setup(server, emit):
        def broadcast(process):
            sock = process.export_socket()
            emit("user_start", pid=os.getpid(), process_pid=process.pid, worker_id=server.worker_id, tid=threading.get_native_id())
            while True:
                msg = sock.recv(65536)
                if not msg:
                    break
                for conn in server.connections:
                    server.send(conn, msg)
                emit("broadcast", count=len(server.connections), stats=server.stats()["worker_response_count"])

        process = Process(broadcast, False, 2, 1)
        server.add_process(process)
        server.on("receive", lambda srv, fd, reactor_id, data: process.export_socket().send(data))
        _late_add(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2})
    assert handle.wait("late_add")["error"] == "StateError"
    user = handle.wait("user_start")
    assert user["worker_id"] == 2  # global id worker_num + task_worker_num + 0
    if mode == "thread":
        assert user["pid"] == user["process_pid"] == handle.pid  # a thread of the master (§16)
    else:
        assert user["pid"] == user["process_pid"] != handle.pid
    clients = [connect(handle.port) for _ in range(3)]
    time.sleep(0.2)
    clients[0].sendall(b"hello all")
    assert [recv_exact(c, 9) for c in clients] == [b"hello all"] * 3
    event = handle.wait("broadcast")
    assert event["count"] == 3 and event["stats"] == 3
    started = time.monotonic()
    assert handle.stop() == 0
    assert time.monotonic() - started < 3  # SIGTERM (THREAD: its pipe shut down, SystemExit) at once


def test_user_process_is_restarted_when_its_callback_returns_or_crashes(run_server, mode, tmp_path):
    """Seed: "if the callback returns, the process keeps exiting and being restarted"; a crash
    (an exception) too; no worker_error (that is for event and task workers)."""
    runs = tmp_path / "runs"

    def setup(server, emit):
        def flaky(process):
            with open(runs, "a") as file:
                file.write("x")
            count = os.path.getsize(runs)
            emit("user_run", count=count, pid=os.getpid(), tid=threading.get_native_id())
            if count == 1:
                return  # returns at once
            if count == 2:
                raise RuntimeError("crash")  # an exception: exit status 255
            parked(process)

        server.add_process(Process(flaky))
        server.on("worker_error", lambda *a: emit("worker_error"))
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    runs_seen = handle.wait_n("user_run", 3)
    assert [e["count"] for e in runs_seen] == [1, 2, 3]
    instances = {e["tid"] if mode == "thread" else e["pid"] for e in runs_seen}
    assert len(instances) == 3  # a new process (thread) each time
    assert not [e for e in handle.drain(0.5) if e["event"] in ("worker_error", "user_run")]
    assert handle.stop() == 0


def test_user_process_timers_pipe_messages_and_contexts(run_server, mode):
    """A user process whose callback returns after setting a timer keeps running its loop:
    timers fire, pipe messages arrive (§17 item 34 copies); send/close reach any connection."""

    def setup(server, emit):
        def user(process):
            def tick(timer_id):
                emit("user_tick", worker_id=server.worker_id)

            server.tick(50, tick)
            emit("user_ready", worker_id=server.worker_id, tasks=server.task_worker)

        def on_pipe_message(srv, src, message):
            emit("pipe_message", at=srv.worker_id, src=src, message=message, copy=message is not shared[0])
            if srv.worker_id == 1 and message.get("kind") == "to-user":  # the user process answers
                srv.send_message({"kind": "from-user"}, 0)

        shared = [{"kind": "to-user"}]

        def to_user(srv, fd):
            return {"result": srv.send_message(shared[0], 1)}

        server.add_process(Process(user))
        server.on("pipe_message", on_pipe_message)
        server.on("receive", run_actions({"to_user": to_user}, emit))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    assert handle.wait("user_ready")["worker_id"] == 1
    handle.wait_n("user_tick", 2)
    command(handle, "to_user")
    assert handle.wait("to_user")["result"] is True
    at_user = handle.wait("pipe_message", at=1)
    assert at_user["src"] == 0 and at_user["message"] == {"kind": "to-user"} and at_user["copy"] is True
    back = handle.wait("pipe_message", at=0)
    assert back["src"] == 1 and back["message"] == {"kind": "from-user"}
    assert handle.stop() == 0


def test_send_message_between_every_kind_of_worker(run_server, mode):
    """send_message from event workers, task workers, a user process and the manager to event and
    task workers; a copy arrives (R4); the master may not send; bad targets are ValueError."""

    def setup(server, emit):
        report_workers(server, emit)

        def user(process):
            server.send_message("user->event", 0)
            server.send_message("user->task", 2)
            parked(process)

        def on_pipe_message(srv, src, message):
            emit("pipe_message", at=srv.worker_id, src=src, message=message, task=srv.task_worker)
            if message == "event->task":
                srv.send_message("task->event", src)
                srv.send_message("task->task", 3)

        def go(srv, fd):
            out = {"to_task": srv.send_message("event->task", 2), "to_event": srv.send_message("event->event", 1)}
            for name, target in (("over", 5), ("negative", -1)):
                try:
                    srv.send_message("x", target)
                except ValueError:
                    out[name] = "ValueError"
            return out

        def on_start(srv):
            try:
                srv.send_message("master", 0)
            except Exception as exc:
                emit("master_send", error=type(exc).__name__)

        server.add_process(Process(user))
        server.on("start", on_start)
        server.on("manager_start", lambda srv: srv.send_message("manager->event", 1))
        server.on("pipe_message", on_pipe_message)
        server.on("receive", run_actions({"go": go}, emit))
        server.on("task", lambda *a: None)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "task_worker_num": 2})
    starts(handle, 4)
    assert handle.wait("master_send")["error"] == "ContextError"
    client = command(handle, "go")
    go = handle.wait("go")
    assert (go["to_task"], go["to_event"], go["over"], go["negative"]) == (True, True, "ValueError", "ValueError")
    received = {e["message"]: (e["at"], e["src"]) for e in handle.wait_n("pipe_message", 7)}
    sender = received["event->task"][1]
    assert received == {
        "user->event": (0, 4),
        "user->task": (2, 4),
        "manager->event": (1, -1),
        "event->task": (2, sender),
        "event->event": (1, sender),
        "task->event": (sender, 2),
        "task->task": (3, 2),
    }
    client.close()
    assert handle.stop() == 0


def test_restarting_a_user_process_leaks_nothing(run_server, mode):
    """A user process that returns when told is started again; after three restarts the tree
    has the same fds, threads and processes as before them."""
    from conftest import tree_resources

    def setup(server, emit):
        def user(process):
            sock = process.export_socket()
            emit("user_start", instance=threading.get_native_id() if server.mode == 3 else os.getpid())
            sock.recv(64)  # "exit" from a worker, or b"" at shutdown: return, be started again

        process = Process(user)
        server.add_process(process)
        server.on("receive", lambda srv, fd, reactor_id, data: process.export_socket().send(b"exit"))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    seen = [handle.wait("user_start")["instance"]]
    time.sleep(0.3)
    baseline = tree_resources(handle)
    client = connect(handle.port)
    for _ in range(3):
        client.sendall(b"x")
        seen.append(handle.wait("user_start", timeout=10)["instance"])
    assert len(set(seen)) == 4
    client.close()
    assert wait_until(lambda: tree_resources(handle) == baseline, timeout=5), (baseline, tree_resources(handle))
    assert handle.stop() == 0
