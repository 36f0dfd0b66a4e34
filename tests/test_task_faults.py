"""Task workers under bad input and faults (issue 11): wrong contexts, unpicklable data, big
payloads (task_tmpdir, package_max_length), a task worker killed -9 with tasks queued for it,
a graceful stop of a task worker whose mailbox is full, and the leak checks (processes,
threads, fds, shared memory, temp files)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import tree_resources
from task_helpers import command, report_workers, run_actions, spilled_files, starts, wait_until
from threadswoole import SWOOLE_THREAD
from threadswoole.state import shm

pytestmark = pytest.mark.timeout(90)


class _LoopKiller(BaseException):
    """Escapes every handler: the task worker thread's loop dies (THREAD mode's kill -9)."""


def _errors(**calls):
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = None
        except Exception as exc:
            out[name] = type(exc).__name__
    return out


def test_calls_in_the_wrong_place_and_unpicklable_data(run_server, mode):
    """§17 item 30: task() in a task worker, finish() outside on_task, unpicklable data (a clear
    TypeError at the call, nothing sent), task() without task workers (StateError elsewhere)."""

    def setup(server, emit):
        def on_task(srv, task_id, src, data):
            emit("in_task", **_errors(task=lambda: srv.task("x"), task_wait=lambda: srv.task_wait("x"), multi=lambda: srv.task_wait_multi(["x"])))
            return None

        def on_worker_start(srv, worker_id):
            if srv.task_worker:  # a task worker outside on_task
                emit("task_worker_start", **_errors(finish=lambda: srv.finish("x")))

        def bad(srv, fd):
            before = srv.stats()["tasking_num"]
            out = _errors(task=lambda: srv.task(lambda: 1), wait=lambda: srv.task_wait(lambda: 1), multi=lambda: srv.task_wait_multi(["ok", lambda: 1]), finish=lambda: srv.finish(1), callback=lambda: srv.task("x", -1, "not callable"))
            out["sent"] = srv.stats()["tasking_num"] - before
            srv.task("probe")
            return out

        report_workers(server, emit, on_worker_start)
        server.on("receive", run_actions({"bad": bad}, emit))
        server.on("task", on_task)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1})
    assert handle.wait("task_worker_start")["finish"] == "ContextError"
    command(handle, "bad")
    bad = handle.wait("bad")
    assert {k: bad[k] for k in ("task", "wait", "multi", "finish", "callback", "sent")} == {"task": "TypeError", "wait": "TypeError", "multi": "TypeError", "finish": "ContextError", "callback": "TypeError", "sent": 0}
    in_task = handle.wait("in_task")  # only the probe ever reached a task worker
    assert {k: in_task[k] for k in ("task", "task_wait", "multi")} == {"task": "ContextError", "task_wait": "ContextError", "multi": "ContextError"}
    assert not [e for e in handle.drain(0.3) if e["event"] == "in_task"]
    assert handle.stop() == 0


def test_task_without_task_workers_is_a_state_error(run_server, mode):
    def setup(server, emit):
        server.on("receive", run_actions({"run": lambda srv, fd: _errors(task=lambda: srv.task("x"), wait=lambda: srv.task_wait("x"))}, emit))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    command(handle, "run")
    run = handle.wait("run")
    assert (run["task"], run["wait"]) == ("StateError", "StateError")
    assert handle.stop() == 0


def test_big_payloads_spill_to_task_tmpdir_and_oversized_ones_warn(run_server, mode, tmp_path):
    """Seed 003: data over 8 KiB crosses through a temp file in task_tmpdir (process modes; THREAD
    passes the bytes); over package_max_length: "task package is too big", still delivered."""
    tmpdir = tmp_path / "tasks"
    tmpdir.mkdir()
    release = tmp_path / "release"

    def setup(server, emit):
        def on_task(srv, task_id, src, data):
            if data == "block":
                while not release.exists():
                    time.sleep(0.01)
                return None
            emit("on_task", size=len(data), intact=data == bytes(range(256)) * (len(data) // 256))
            return data  # the big result crosses back the same way

        def big(srv, fd):
            srv.task("block", 0)
            return {"ids": [srv.task(bytes(range(256)) * 400, 0), srv.task(bytes(range(256)) * 40, 0)]}  # 100 KiB and 10 KiB

        report_workers(server, emit)
        server.on("receive", run_actions({"big": big}, emit))
        server.on("task", on_task)
        server.on("finish", lambda srv, task_id, data: emit("on_finish", task_id=task_id, size=len(data)))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1, "task_tmpdir": str(tmpdir), "package_max_length": 50_000, "max_wait_time": 1})
    starts(handle, 2)
    command(handle, "big")
    handle.wait("big")
    too_big = handle.wait("warning")
    assert too_big["message"].startswith("task package is too big") and too_big["worker_id"] == 0
    queued = wait_until(lambda: spilled_files(str(tmpdir)), timeout=2) if mode != "thread" else spilled_files(str(tmpdir))
    assert len(queued) == (2 if mode != "thread" else 0)  # the two queued behind "block"
    release.touch()
    assert sorted((e["size"], e["intact"]) for e in handle.wait_n("on_task", 2)) == [(10240, True), (102400, True)]
    assert sorted(e["size"] for e in handle.wait_n("on_finish", 2)) == [10240, 102400]
    assert handle.wait("warning")["message"].startswith("task package is too big")  # finish() of the big result
    assert wait_until(lambda: not spilled_files(str(tmpdir)), timeout=2)  # read and removed
    release.unlink()
    command(handle, "big")  # blocked again, with two spilled tasks queued: nobody will read them
    handle.wait("big")
    assert len(wait_until(lambda: spilled_files(str(tmpdir)), timeout=2) or []) == (2 if mode != "thread" else 0)
    assert handle.stop() == 0  # the blocked task worker is killed after max_wait_time
    assert spilled_files(str(tmpdir)) == []  # the master removed what was left


def test_killed_task_worker_loses_only_the_task_it_ran(run_server, mode, tmp_path):
    """kill -9 of a task worker (THREAD: its thread's loop dies) while tasks are queued for it:
    the queued tasks reach its replacement, a task_wait on the lost one returns False within its
    timeout, the event worker keeps serving; no process, thread, fd, segment or temp file leaks."""
    tmpdir = tmp_path / "tasks"
    tmpdir.mkdir()

    def setup(server, emit):
        def on_task(srv, task_id, src, data):
            emit("on_task", data=data if isinstance(data, str) else "big", instance=srv.worker_tid or os.getpid(), process=os.getpid())
            if data in ("block", "block-wait"):
                if srv.mode == SWOOLE_THREAD:  # a thread cannot be killed -9: its loop dies instead
                    time.sleep(0.2)
                    raise _LoopKiller()
                time.sleep(30)  # the test kills this process meanwhile
            return data

        def queue(srv, fd):
            return {"ids": [srv.task("block"), srv.task("q1"), srv.task(b"x" * 20000), srv.task("q3")]}

        def wait(srv, fd):
            started = time.monotonic()
            result = srv.task_wait("block-wait", 1.5)
            return {"result": result, "error": srv.get_last_error(), "took": time.monotonic() - started}

        def ping(srv, fd):
            srv.send(fd, b"pong")
            return {"worker_id": srv.worker_id}

        report_workers(server, emit)
        server.on("worker_error", lambda srv, wid, pid, code, signo: emit("worker_error", worker_id=wid, signal=signo))
        server.on("receive", run_actions({"queue": queue, "wait": wait, "ping": ping}, emit))
        server.on("task", on_task)
        server.on("finish", lambda srv, task_id, data: emit("on_finish", task_id=task_id, data=data if isinstance(data, str) else "big"))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1, "task_tmpdir": str(tmpdir), "max_wait_time": 1})
    starts(handle, 2)
    baseline = tree_resources(handle)
    command(handle, "queue").close()
    assert handle.wait("queue")["ids"] == [0, 1, 2, 3]
    running = handle.wait("on_task", data="block")
    if mode != "thread":
        os.kill(running["process"], signal.SIGKILL)
    error = handle.wait("worker_error")
    assert error["worker_id"] == 1 and error["signal"] == (signal.SIGKILL if mode != "thread" else 0)
    replacement = handle.wait("worker_start", worker_id=1)
    assert replacement["instance"] != running["instance"]
    assert [handle.wait("on_task", data=name)["instance"] for name in ("q1", "big", "q3")] == [replacement["instance"]] * 3
    assert sorted(e["data"] for e in handle.wait_n("on_finish", 3)) == ["big", "q1", "q3"]
    client = command(handle, "wait")
    lost = handle.wait("on_task", data="block-wait")
    if mode != "thread":
        os.kill(lost["process"], signal.SIGKILL)
    waited = handle.wait("wait", timeout=10)
    assert waited["result"] is False and waited["error"] == 2003 and waited["took"] < 1.9
    handle.wait("worker_start", worker_id=1)
    client.close()
    ping = command(handle, "ping")
    assert ping.recv(4) == b"pong"  # the event worker serves again
    ping.close()
    assert not [e for e in handle.drain(0.3) if e["event"] == "on_finish"]  # the lost ones never finish
    assert wait_until(lambda: tree_resources(handle) == baseline, timeout=5), (baseline, tree_resources(handle))
    assert handle.stop() == 0
    assert shm.segments_of(handle.pid) == []
    assert spilled_files(str(tmpdir)) == []


@pytest.mark.parametrize("mode", ["base", "process"])  # THREAD: a task thread's stop is no mailbox message
@pytest.mark.parametrize("how", ["stop", "reload"])
def test_graceful_stop_of_a_task_worker_waits_for_room_in_its_full_mailbox(run_server, mode, tmp_path, how):
    """stop(id, True) or a reload_async reload of a task worker stuck in on_task with its
    mailbox full: the stop waits for room behind the queued tasks (never dropped), and the
    manager's loop goes on meanwhile (another task worker is replaced at once). Once released,
    the old worker runs every queued task, then its worker_stop, and a replacement starts."""
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    max_wait_time = 3

    def setup(server, emit):
        ran = []  # the queued tasks this task worker ran (one list per process)

        def on_task(srv, task_id, src, data):
            if data == "block":
                emit("blocked", instance=os.getpid())
                with open(fifo, "rb") as release:  # until the test writes to the fifo
                    release.read(1)
            else:
                ran.append(data[0])
            return None

        def fill(srv, fd):  # until task() fails: the last one waited max_wait_time for room
            accepted = 0
            while srv.task(("q", b"x" * 4096), 0) is not False:  # dst_worker_id 0: worker id 1
                accepted += 1
            return {"accepted": accepted, "error": srv.get_last_error()}

        def trigger(srv, fd):  # the probe: task worker 2 is stopped too and replaced by the manager
            done = srv.reload() if how == "reload" else srv.stop(1, True) and srv.stop(2)
            return {"done": done}

        server.on("worker_start", lambda srv, worker_id: emit("worker_start", worker_id=worker_id, instance=os.getpid()))
        server.on("worker_stop", lambda srv, worker_id: emit("worker_stop", worker_id=worker_id, instance=os.getpid(), ran=len(ran)))
        server.on("receive", run_actions({"block": lambda srv, fd: srv.task("block", 0), "fill": fill, "trigger": trigger}, emit))
        server.on("task", on_task)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 2, "reload_async": True, "max_wait_time": max_wait_time})
    first = starts(handle, 3)
    command(handle, "block").close()
    blocked = handle.wait("blocked")
    assert blocked["instance"] == first[1]["instance"]
    command(handle, "fill").close()
    filled = handle.wait("fill", timeout=max_wait_time + 10)
    assert filled["accepted"] > 100 and filled["error"] == 2002  # the mailbox is full: TASK_DISPATCH_FAIL
    started = time.monotonic()
    command(handle, "trigger").close()
    assert handle.wait("trigger")["done"] is True
    probe = handle.wait("worker_start", worker_id=2, timeout=max_wait_time + 5)
    stalled = time.monotonic() - started
    assert probe["instance"] != first[2]["instance"]
    assert stalled < max_wait_time / 2, f"the manager's loop was blocked {stalled:.2f}s by the stop"
    handle.pump()
    stopped = [(e["worker_id"], e["instance"]) for e in handle.events_named("worker_stop")]
    assert 1 not in [worker_id for worker_id, _ in stopped]  # still blocked
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO unless on_task is still reading it
    os.write(writer, b"x")
    os.close(writer)
    stop = handle.wait("worker_stop", worker_id=1, timeout=max_wait_time + 5)
    assert stop["instance"] == blocked["instance"] and stop["ran"] == filled["accepted"]
    replacement = handle.wait("worker_start", worker_id=1, timeout=max_wait_time + 5)
    assert replacement["instance"] != blocked["instance"]
    if how == "reload" and (0, first[0]["instance"]) not in stopped:  # BASE: a draining event
        # worker still reads mailbox 0, so the shutdown's stop for its replacement could reach it
        handle.wait("worker_stop", worker_id=0, instance=first[0]["instance"], timeout=max_wait_time + 5)
    assert handle.stop() == 0
