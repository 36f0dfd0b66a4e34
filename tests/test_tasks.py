"""Task workers (contract §7, §5.2, §5.4; checklist §17 items 10, 26-33), in every mode.

The event worker is driven by a TCP command (its on_receive runs the named action and reports
the result as an event); task workers report what they ran. Results, waits and errors are the
seed's: task ids from 0, on_finish in the sender, task_wait False + 2003 on a timeout, late
results discarded with "task[<id>] has expired", ContextError where a call is not allowed.
"""

from __future__ import annotations

import os
import time

import pytest

from task_helpers import command, report_workers, run_actions, starts
from threadswoole import SWOOLE_WORKER_BUSY, StateError

pytestmark = pytest.mark.timeout(90)
TASKS = {"worker_num": 1, "task_worker_num": 2}


def _on_task(emit, behaviour=None):
    def on_task(srv, task_id, src_worker_id, data):
        emit("on_task", task_id=task_id, src=src_worker_id, data=repr(data), worker_id=srv.worker_id, task_worker=srv.task_worker, status=srv.get_worker_status(), instance=srv.worker_tid or os.getpid())
        if behaviour is not None:
            return behaviour(srv, task_id, data)
        return ("echo", data)

    return on_task


def test_worker_start_fires_for_event_and_task_workers(run_server, mode):
    """§17 item 10: worker_num + task_worker_num starts, task_worker True exactly for ids >= worker_num."""

    def setup(server, emit):
        report_workers(server, emit)
        server.on("task", _on_task(emit))
        server.on("finish", lambda *a: None)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "task_worker_num": 3})
    started = starts(handle, 5)
    assert sorted(started) == [0, 1, 2, 3, 4]
    assert {wid: e["task"] for wid, e in started.items()} == {0: False, 1: False, 2: True, 3: True, 4: True}
    assert all(e["get_worker_id"] == wid for wid, e in started.items())
    assert len({e["instance"] for e in started.values()}) == 5
    if mode == "thread":
        assert {e["process"] for e in started.values()} == {handle.pid}  # task workers are threads
    else:
        assert handle.pid not in {e["process"] for e in started.values()}  # ... or processes
    assert handle.stop() == 0
    stopped = sorted(e["worker_id"] for e in handle.drain(0.3) if e["event"] == "worker_stop")
    assert stopped == [0, 1, 2, 3, 4]


def test_task_finish_callbacks_and_copies(run_server, mode):
    """§17 items 26, 27, 32 and R4: ids from 0, on_finish gets the return value in the sender,
    a finish_callback replaces on_finish, two finish() calls are two on_finish, data is a copy."""
    sent = {}

    def behaviour(srv, task_id, data):
        if data == "twice":
            srv.finish("first")
            srv.finish("second")
            return None
        if isinstance(data, dict):
            return {"same_object": data is sent.get("dict"), "equal": data == {"n": [1, 2]}}
        return ("echo", data)

    def setup(server, emit):
        def run(srv, fd):
            sent["dict"] = {"n": [1, 2]}
            first = srv.task(sent["dict"])
            second = srv.task("twice")
            third = srv.task("cb", -1, lambda s, task_id, data: emit("callback", task_id=task_id, data=repr(data), worker_id=s.worker_id))
            return {"ids": [first, second, third], "types": [type(i).__name__ for i in (first, second, third)]}

        server.on("receive", run_actions({"run": run}, emit))
        server.on("task", _on_task(emit, behaviour))
        server.on("finish", lambda srv, task_id, data: emit("on_finish", task_id=task_id, data=repr(data), worker_id=srv.worker_id))

    handle = run_server(setup, mode=mode, settings=TASKS)
    command(handle, "run")
    ran = handle.wait("run")
    assert ran["ids"] == [0, 1, 2] and ran["types"] == ["int"] * 3  # the first id is 0: callers use `is False`
    tasks = {e["task_id"]: e for e in handle.wait_n("on_task", 3)}
    assert all(e["src"] == 0 and e["task_worker"] and e["worker_id"] in (1, 2) for e in tasks.values())
    assert all(e["status"] == SWOOLE_WORKER_BUSY for e in tasks.values())  # busy while on_task runs
    finishes = handle.wait_n("on_finish", 3)
    by_id = {}
    for event in finishes:
        assert event["worker_id"] == 0  # in the worker that sent the task
        by_id.setdefault(event["task_id"], []).append(event["data"])
    assert by_id[0] == [repr({"same_object": False, "equal": True})]  # a copy, THREAD mode too
    assert by_id[1] == ["'first'", "'second'"]
    callback = handle.wait("callback")
    assert callback == {**callback, "task_id": 2, "data": repr(("echo", "cb")), "worker_id": 0}
    assert not [e for e in handle.drain(0.3) if e["event"] == "on_finish"]  # not for the callback's task
    assert handle.stop() == 0


def test_dst_worker_id_is_a_task_pool_index(run_server, mode):
    """§17 item 31 and §7: dst 0 runs in worker_id == worker_num; out of range is ValueError."""

    def setup(server, emit):
        def run(srv, fd):
            out = {"ids": [srv.task("to0", 0), srv.task("to1", 1)]}
            for name, dst in (("over", 2), ("negative", -2), ("boolean", True)):
                try:
                    srv.task("x", dst)
                except Exception as exc:
                    out[name] = type(exc).__name__
            return out

        server.on("receive", run_actions({"run": run}, emit))
        server.on("task", _on_task(emit))
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "task_worker_num": 2})
    command(handle, "run")
    ran = handle.wait("run")
    assert (ran["over"], ran["negative"], ran["boolean"]) == ("ValueError", "ValueError", "TypeError")
    ran_in = {e["data"]: e["worker_id"] for e in handle.wait_n("on_task", 2)}
    assert ran_in == {"'to0'": 2, "'to1'": 3}
    assert not [e for e in handle.drain(0.3) if e["event"] == "on_task"]  # the refused ones were never sent
    assert handle.stop() == 0


def test_task_wait_timeout_late_result_and_expired_warning(run_server, mode):
    """§17 item 28 and §7: a timeout returns False with 2003 within the timeout; the late result
    is discarded with "task[<id>] has expired", as is a second finish of a waited-for task."""

    def behaviour(srv, task_id, data):
        if data == "slow":
            time.sleep(0.5)
        if data == "twice":
            srv.finish("one")
            return "two"
        return ("echo", data)

    def setup(server, emit):
        def wait(srv, fd):
            started = time.monotonic()
            fast = srv.task_wait("fast", 2.0)
            slow = srv.task_wait("slow", 0.1)
            took = time.monotonic() - started
            return {"fast": repr(fast), "slow": slow, "error": srv.get_last_error(), "took": took}

        def twice(srv, fd):
            return {"result": srv.task_wait("twice", 2.0)}

        def refused(srv, fd):
            out = {}
            for name, call in (("timeout", lambda: srv.task_wait("x", "1")), ("finish", lambda: srv.finish("x"))):
                try:
                    call()
                except Exception as exc:
                    out[name] = type(exc).__name__
            return out

        report_workers(server, emit)
        server.on("receive", run_actions({"wait": wait, "twice": twice, "refused": refused}, emit))
        server.on("task", _on_task(emit, behaviour))
        server.on("finish", lambda srv, task_id, data: emit("on_finish", task_id=task_id))

    handle = run_server(setup, mode=mode, settings=TASKS)
    starts(handle, 3)
    command(handle, "wait")
    waited = handle.wait("wait")
    assert waited["fast"] == repr(("echo", "fast"))
    assert waited["slow"] is False and waited["error"] == 2003
    assert waited["took"] < 0.45  # the slow task sleeps 0.5 s: the wait gave up at 0.1 s
    slow_id = [e for e in handle.wait_n("on_task", 2) if e["data"] == "'slow'"][0]["task_id"]
    expired = handle.wait("warning", timeout=5)
    assert expired["message"] == f"task[{slow_id}] has expired" and expired["worker_id"] == 0
    command(handle, "twice")
    assert handle.wait("twice")["result"] == "one"
    twice_id = handle.wait("on_task", data="'twice'")["task_id"]
    assert handle.wait("warning", timeout=5)["message"] == f"task[{twice_id}] has expired"
    command(handle, "refused")
    refused = handle.wait("refused")
    assert (refused["timeout"], refused["finish"]) == ("TypeError", "ContextError")  # finish() in an event worker
    assert not [e for e in handle.drain(0.3) if e["event"] == "on_finish"]  # late results never reach on_finish
    assert handle.stop() == 0


def test_task_wait_multi_and_task_co(run_server, mode):
    """§17 item 29: results by index, the slow one missing (multi) or False (task_co); at most 1024."""

    def behaviour(srv, task_id, data):
        if data == "b":
            time.sleep(2.5)  # far past the 1 s wait; a and c have all of it (a loaded CI box once missed 0.3 s)
        return data.upper()

    def setup(server, emit):
        def multi(srv, fd):
            return {"result": {str(k): v for k, v in srv.task_wait_multi(["a", "b", "c"], 1.0).items()}}

        def co(srv, fd):
            return {"result": srv.task_co(["a", "b", "c"], 1.0)}

        def too_many(srv, fd):
            before = srv.stats()["tasking_num"]
            out = {}
            for name, call in (("multi", srv.task_wait_multi), ("co", srv.task_co)):
                try:
                    call(["x"] * 1025, 0.1)
                except ValueError:
                    out[name] = "ValueError"
            out["sent"] = srv.stats()["tasking_num"] - before
            out["ok"] = len(srv.task_wait_multi(["x"] * 8, 5.0))
            return out

        report_workers(server, emit)
        server.on("receive", run_actions({"multi": multi, "co": co, "too_many": too_many}, emit))
        server.on("task", lambda srv, task_id, src, data: behaviour(srv, task_id, data))
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "task_worker_num": 3})
    starts(handle, 4)
    command(handle, "multi")
    assert handle.wait("multi")["result"] == {"0": "A", "2": "C"}
    handle.wait("warning", timeout=10)  # b's late result: every task worker is idle again
    command(handle, "co")
    assert handle.wait("co")["result"] == ["A", False, "C"]
    handle.wait("warning", timeout=10)
    command(handle, "too_many")
    too_many = handle.wait("too_many")
    assert (too_many["multi"], too_many["co"], too_many["sent"], too_many["ok"]) == ("ValueError", "ValueError", 0, 8)
    assert handle.stop() == 0


def test_task_settings(tmp_path):
    """task_enable_coroutine is accepted (no effect, no warning); task_ipc_mode is 1..3; a
    missing task_tmpdir and a missing on_task / on_finish are refused at start()."""
    import warnings

    from threadswoole import SWOOLE_BASE, ConfigError, Server

    server = Server("127.0.0.1", 0, SWOOLE_BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        server.set({"task_worker_num": 2, "task_enable_coroutine": True, "task_max_request": 10, "task_tmpdir": str(tmp_path)})
    with pytest.raises(ConfigError):
        server.set({"task_ipc_mode": 4})
    server.on("receive", lambda *a: None)
    server.on("task", lambda *a: None)
    with pytest.raises(StateError):
        server.start()  # no 'finish' callback (seed: task workers need both)
    server.on("finish", lambda *a: None)
    server.set({"task_tmpdir": str(tmp_path / "missing")})
    with pytest.raises(ConfigError):
        server.start()
    server.ports[0].close()
