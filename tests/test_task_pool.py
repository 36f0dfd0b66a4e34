"""The task pool as a whole (issue 11): task_ipc_mode 1/2/3, stats and worker status, one-way
tasks from the master, the manager and user processes (§17 item 33), task_max_request,
reload(True) / SIGUSR2 / SIGUSR1 (§17 items 38, 39) and stop() of a task worker."""

from __future__ import annotations

import os
import signal
import time

import pytest

from task_helpers import command, parked, report_workers, run_actions, starts, wait_until
from threadswoole import SWOOLE_WORKER_BUSY, SWOOLE_WORKER_IDLE, Process
from threadswoole.process import sysv

pytestmark = pytest.mark.timeout(90)


def _blocking_tasks(emit, release):
    def on_task(srv, task_id, src, data):
        emit("on_task", data=repr(data), worker_id=srv.worker_id, src=src)
        if data == "block":
            while not release.exists():
                time.sleep(0.01)
        return data

    return on_task


@pytest.mark.parametrize("ipc_mode", [1, 2, 3])
def test_task_ipc_modes_and_queue_stats(run_server, mode, ipc_mode, tmp_path):
    """1 and 2: dst_worker_id is honoured; 3: it is ignored, every task worker takes from one
    queue (a blocked worker does not hold the tasks back). 2 and 3 report task_queue_num/bytes."""
    release = tmp_path / "release"

    def setup(server, emit):
        def block(srv, fd):
            return {"ids": [srv.task("block", 0)]}

        def burst(srv, fd):
            return {"ids": [srv.task(f"t{i}", 0) for i in range(6)]}

        def stats(srv, fd):
            values = srv.stats()
            return {k: values.get(k) for k in ("tasking_num", "task_queue_num", "task_queue_bytes", "task_idle_worker_num")} | {"has_queue_keys": "task_queue_num" in values}

        report_workers(server, emit)
        server.on("receive", run_actions({"block": block, "burst": burst, "stats": stats}, emit))
        server.on("task", _blocking_tasks(emit, release))
        server.on("finish", lambda *a: None)

    queues_before = sysv.listed_queues()
    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 2, "task_ipc_mode": ipc_mode, "task_enable_coroutine": True})
    starts(handle, 3)
    assert sysv.listed_queues() == queues_before  # no SysV queue: mailboxes (modes/task_wiring.py)
    command(handle, "block")
    blocked_in = handle.wait("on_task", data="'block'")["worker_id"]
    command(handle, "burst")
    handle.wait("burst")
    if ipc_mode == 3:  # the free worker runs all six while the other stays blocked
        ran = handle.wait_n("on_task", 6)
        assert {e["worker_id"] for e in ran} == {3 - blocked_in}
    else:
        assert blocked_in == 1
        time.sleep(0.2)
        assert not [e for e in handle.drain() if e["event"] == "on_task"]  # queued for worker 1

    def settled():
        command(handle, "stats")
        return handle.wait("stats")

    stats = wait_until(lambda: (s := settled())["tasking_num"] == (1 if ipc_mode == 3 else 7) and s, timeout=3)
    assert stats and stats["has_queue_keys"] is (ipc_mode != 1)
    if ipc_mode == 2:
        assert stats["task_queue_num"] == 6 and stats["task_queue_bytes"] > 6 * 5
    if ipc_mode == 3:
        assert stats["task_queue_num"] == 0 and stats["task_idle_worker_num"] == 1
    release.touch()
    if ipc_mode != 3:
        assert len(handle.wait_n("on_task", 6)) == 6
    assert wait_until(lambda: settled()["tasking_num"] == 0, timeout=3)
    assert handle.stop() == 0


def test_worker_status_of_task_workers(run_server, mode, tmp_path):
    """get_worker_status: BUSY while on_task runs (read from the event worker), IDLE otherwise;
    False for an id that is not a worker (a user process) or does not exist (§17 item 35)."""
    release = tmp_path / "release"

    def setup(server, emit):
        def status(srv, fd):
            return {"statuses": [srv.get_worker_status(w) for w in (1, 2)], "user": srv.get_worker_status(3), "unknown": srv.get_worker_status(9), "user_num": srv.stats()["user_worker_num"]}

        report_workers(server, emit)
        server.add_process(Process(parked))
        server.on("receive", run_actions({"block": lambda srv, fd: srv.task("block", 1), "status": status}, emit))
        server.on("task", _blocking_tasks(emit, release))
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 2})
    starts(handle, 3)
    command(handle, "status")
    idle = handle.wait("status")
    assert idle["statuses"] == [SWOOLE_WORKER_IDLE] * 2 and idle["user"] is False and idle["unknown"] is False and idle["user_num"] == 1
    command(handle, "block")
    handle.wait("on_task")
    command(handle, "status")
    assert handle.wait("status")["statuses"] == [SWOOLE_WORKER_IDLE, SWOOLE_WORKER_BUSY]
    release.touch()
    assert handle.stop() == 0


def test_one_way_tasks_from_master_manager_and_user_process(run_server, mode):
    """§17 item 33 and §7: tasks from the master (on_start), the manager (manager_start) and a
    user process run, and their results (return value, finish) reach nobody."""

    def setup(server, emit):
        def user(process):
            emit("user_task", task_id=server.task("from-user"), wait=_error(lambda: server.task_wait("x")), multi=_error(lambda: server.task_co(["x"])))
            parked(process)

        def on_task(srv, task_id, src, data):
            emit("on_task", data=data, src=src)
            srv.finish("discarded")
            return "discarded too"

        server.on("start", lambda srv: emit("master_task", task_id=srv.task("from-master")))
        server.on("manager_start", lambda srv: emit("manager_task", task_id=srv.task("from-manager")))
        server.add_process(Process(user))
        server.on("receive", lambda *a: None)
        server.on("task", on_task)
        server.on("finish", lambda srv, task_id, data: emit("on_finish", data=data))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1})
    got = {e["data"]: e["src"] for e in handle.wait_n("on_task", 3)}
    assert got == {"from-master": -1, "from-manager": -1, "from-user": 2}
    event = handle.wait("user_task")
    assert event["task_id"] == 0 and event["wait"] == "ContextError" and event["multi"] == "ContextError"
    assert handle.wait("master_task")["task_id"] == 0 and handle.wait("manager_task")["task_id"] == 0
    assert not [e for e in handle.drain(0.5) if e["event"] == "on_finish"]
    assert handle.stop() == 0


def _error(call):
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return None


def test_task_max_request_recycles_the_task_worker(run_server, mode):
    def setup(server, emit):
        report_workers(server, emit)
        server.on("receive", run_actions({"go": lambda srv, fd: [srv.task(i) for i in range(5)]}, emit))
        server.on("task", lambda srv, task_id, src, data: emit("on_task", data=data, instance=srv.worker_tid or os.getpid()) or data)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1, "task_max_request": 3})
    first = starts(handle, 2)[1]["instance"]
    command(handle, "go")
    ran = [(e["data"], e["instance"]) for e in handle.wait_n("on_task", 5)]
    second = handle.wait("worker_start", worker_id=1)["instance"]
    assert second != first
    assert ran == [(0, first), (1, first), (2, first), (3, second), (4, second)]  # none lost
    handle.wait("worker_stop", worker_id=1)
    assert handle.stop() == 0


def test_reload_of_task_workers_only_and_of_everything(run_server, mode):
    """§17 items 38, 39: SIGUSR2 / reload(True) restart only the task workers (BASE: refused),
    SIGUSR1 restarts event and task workers; the user process is never reloaded."""

    def setup(server, emit):
        report_workers(server, emit)
        server.add_process(Process(lambda p: (emit("user_start", pid=os.getpid()), parked(p))))
        server.on("receive", run_actions({"reload_tasks": lambda srv, fd: {"result": srv.reload(True)}}, emit))
        server.on("task", lambda *a: None)
        server.on("finish", lambda *a: None)
        server.on("after_reload", lambda srv: emit("after_reload"))

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "task_worker_num": 2})
    before = {wid: e["instance"] for wid, e in starts(handle, 4).items()}
    user = handle.wait("user_start")
    command(handle, "reload_tasks")
    assert handle.wait("reload_tasks")["result"] is (mode != "base")  # seed: BASE cannot reload only task workers
    if mode != "base":
        after = {wid: e["instance"] for wid, e in starts(handle, 2).items()}
        assert sorted(after) == [2, 3] and not set(after.values()) & set(before.values())
        before.update(after)
        handle.wait("after_reload")  # a reload asked before the last one finished is dropped
        handle.signal(signal.SIGUSR2)
        again = {wid: e["instance"] for wid, e in starts(handle, 2).items()}
        assert sorted(again) == [2, 3] and not set(again.values()) & set(before.values())
        before.update(again)
        handle.wait("after_reload")
    time.sleep(0.3)
    assert not [e for e in handle.drain() if e["event"] == "worker_start"]  # event workers untouched
    handle.signal(signal.SIGUSR1)
    everything = {wid: e["instance"] for wid, e in starts(handle, 4).items()}
    assert sorted(everything) == [0, 1, 2, 3] and not set(everything.values()) & set(before.values())
    assert not [e for e in handle.drain(0.3) if e["event"] == "user_start"]  # not restarted
    if mode != "thread":
        assert os.path.exists(f"/proc/{user['pid']}")
    assert handle.stop() == 0


def test_stop_of_a_task_worker(run_server, mode):
    """stop(task worker id) from an event worker, and stop() inside on_task (after that task):
    worker_stop runs, the same id starts again, queued tasks are not lost."""

    def setup(server, emit):
        report_workers(server, emit)

        def on_task(srv, task_id, src, data):
            emit("on_task", data=data, instance=srv.worker_tid or os.getpid())
            if data == "stop-self":
                emit("stopped_self", result=srv.stop())
            return data

        server.on("receive", run_actions({"stop": lambda srv, fd: {"result": srv.stop(1), "unknown": srv.stop(7)}, "self": lambda srv, fd: [srv.task(d) for d in ("stop-self", "after")]}, emit))
        server.on("task", on_task)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1})
    first = starts(handle, 2)[1]["instance"]
    command(handle, "stop")
    stop = handle.wait("stop")
    assert stop["result"] is True and stop["unknown"] is False
    handle.wait("worker_stop", worker_id=1)
    second = handle.wait("worker_start", worker_id=1)["instance"]
    assert second != first
    command(handle, "self")
    assert handle.wait("stopped_self")["result"] is True
    handle.wait("worker_stop", worker_id=1)
    third = handle.wait("worker_start", worker_id=1)["instance"]
    assert third != second and handle.wait("on_task", data="after")["instance"] == third
    assert handle.stop() == 0


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_async_reload_of_task_workers_loses_no_task(run_server, mode):
    """reload_async: the task worker is asked to stop with wait_event; the tasks queued for it all
    run (in it, or in its replacement) and a new instance of the id starts."""

    def setup(server, emit):
        report_workers(server, emit)

        def queue_and_reload(srv, fd):
            ids = [srv.task(i, 0) for i in range(5)]
            return {"ids": ids, "reload": srv.reload(True)}

        def on_task(srv, task_id, src, data):
            time.sleep(0.05)
            emit("on_task", data=data, instance=srv.worker_tid or os.getpid())

        server.on("receive", run_actions({"go": queue_and_reload}, emit))
        server.on("task", on_task)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1, "reload_async": True})
    first = starts(handle, 2)[1]["instance"]
    command(handle, "go")
    assert handle.wait("go")["reload"] is True
    assert sorted(e["data"] for e in handle.wait_n("on_task", 5)) == [0, 1, 2, 3, 4]
    assert handle.wait("worker_start", worker_id=1)["instance"] != first
    assert handle.stop() == 0


@pytest.mark.parametrize("where", ["task worker", "user process"])
def test_timers_and_shutdown_in_a_task_worker_or_a_user_process(run_server, mode, where):
    """Contract §5.2: tick/after work in task workers and user processes; shutdown() is allowed
    there ([decision]); get_worker_id() is False in a user process."""

    def setup(server, emit):
        def act(srv):
            srv.after(20, lambda: emit("after", worker_id=srv.worker_id, get_worker_id=srv.get_worker_id(), task=srv.task_worker))

        def user(process):
            act(server)
            server.after(200, lambda: emit("shutdown", result=server.shutdown()))

        def on_worker_start(srv, worker_id):
            if srv.task_worker and where == "task worker":
                act(srv)
                srv.after(200, lambda: emit("shutdown", result=srv.shutdown()))

        report_workers(server, emit, on_worker_start)
        if where == "user process":
            server.add_process(Process(user))
        server.on("receive", lambda *a: None)
        server.on("task", lambda *a: None)
        server.on("finish", lambda *a: None)
        server.on("shutdown", lambda srv: emit("on_shutdown"))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 1})
    after = handle.wait("after")
    assert after["worker_id"] == (1 if where == "task worker" else 2) and after["task"] is (where == "task worker")
    assert after["get_worker_id"] == (1 if where == "task worker" else False)
    if where == "task worker":  # (a user process may be gone, SIGTERM, before it can report)
        assert handle.wait("shutdown")["result"] is True
    assert handle.wait_exit() == 0
    handle.wait("on_shutdown")
    assert handle.wait("__returned__")["result"] is True
