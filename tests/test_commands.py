"""`add_command` / `command` (seed 002, §17 item 36), in every mode."""

from __future__ import annotations

import json
import os

import pytest

from task_helpers import command, run_actions
from threadswoole import (
    SWOOLE_BASE,
    SWOOLE_SERVER_COMMAND_EVENT_WORKER,
    SWOOLE_SERVER_COMMAND_MANAGER,
    SWOOLE_SERVER_COMMAND_MASTER,
    SWOOLE_SERVER_COMMAND_REACTOR_THREAD,
    SWOOLE_SERVER_COMMAND_TASK_WORKER,
    Server,
)

pytestmark = pytest.mark.timeout(90)
EVERYWHERE = SWOOLE_SERVER_COMMAND_MASTER | SWOOLE_SERVER_COMMAND_MANAGER | SWOOLE_SERVER_COMMAND_EVENT_WORKER | SWOOLE_SERVER_COMMAND_TASK_WORKER | SWOOLE_SERVER_COMMAND_REACTOR_THREAD


def test_add_command_arguments():
    server = Server("127.0.0.1", 0, SWOOLE_BASE)
    assert server.add_command("x", SWOOLE_SERVER_COMMAND_EVENT_WORKER, lambda srv, data: None) is True
    assert server.addCommand("x", SWOOLE_SERVER_COMMAND_EVENT_WORKER, lambda srv, data: None) is False  # seed 002
    assert server.get_last_error() == 505
    for args, error in (((1, 8, print), TypeError), (("", 8, print), ValueError), (("y", 0, print), ValueError), (("y", 64, print), ValueError), (("y", True, print), TypeError), (("y", 8, "print"), TypeError)):
        with pytest.raises(error):
            server.add_command(*args)
    server.ports[0].close()


def test_commands_run_in_the_target_process_and_answer_the_master(run_server, mode):
    """The seed's example: a callback returning json_encode(['pid' => getpid()]), called from
    on_start with each process type; its answer decoded (json_decode) or as it is."""

    def setup(server, emit):
        def getpid(srv, data):
            return json.dumps({"pid": os.getpid(), "worker_id": srv.worker_id, "task": srv.task_worker, "data": data})

        def on_start(srv):
            calls = {
                "master": (0, SWOOLE_SERVER_COMMAND_MASTER),
                "event1": (1, SWOOLE_SERVER_COMMAND_EVENT_WORKER),
                "task0": (0, SWOOLE_SERVER_COMMAND_TASK_WORKER),
                "manager": (0, SWOOLE_SERVER_COMMAND_MANAGER),
                "reactor0": (0, SWOOLE_SERVER_COMMAND_REACTOR_THREAD),
                "event_out_of_range": (2, SWOOLE_SERVER_COMMAND_EVENT_WORKER),
            }
            out = {}
            for name, (process_id, process_type) in calls.items():
                result = srv.command("getpid", process_id, process_type, {"a": 1})
                out[name] = result if result is not False else ["False", srv.get_last_error()]
            out["raw"] = srv.command("getpid", 0, SWOOLE_SERVER_COMMAND_EVENT_WORKER, [1], False)
            out["unknown"] = [srv.command("nope", 0, SWOOLE_SERVER_COMMAND_MASTER, None), srv.get_last_error()]
            out["not_accepted"] = [srv.command("only_workers", 0, SWOOLE_SERVER_COMMAND_MASTER, None), srv.get_last_error()]
            out["raised"] = [srv.command("broken", 0, SWOOLE_SERVER_COMMAND_EVENT_WORKER, None), srv.get_last_error()]
            try:
                srv.command("getpid", 0, SWOOLE_SERVER_COMMAND_MASTER | SWOOLE_SERVER_COMMAND_MANAGER, None)
            except ValueError:
                out["two_types"] = "ValueError"
            emit("commands", master_pid=os.getpid(), **out)

        def from_worker(srv, fd):
            try:
                srv.command("getpid", 0, SWOOLE_SERVER_COMMAND_MASTER, None)
            except Exception as exc:
                return {"error": type(exc).__name__}
            return {}

        server.add_command("getpid", EVERYWHERE, getpid)
        server.add_command("only_workers", SWOOLE_SERVER_COMMAND_EVENT_WORKER, getpid)
        server.add_command("broken", SWOOLE_SERVER_COMMAND_EVENT_WORKER, lambda srv, data: 1 / 0)
        server.on("start", on_start)
        server.on("receive", run_actions({"from_worker": from_worker}, emit))
        server.on("task", lambda *a: None)
        server.on("finish", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 2, "task_worker_num": 1})
    out = handle.wait("commands", timeout=20)
    master = out["master_pid"]
    assert out["master"] == {"pid": master, "worker_id": -1, "task": False, "data": {"a": 1}}
    assert out["event1"]["worker_id"] == 1 and out["event1"]["task"] is False and out["event1"]["data"] == {"a": 1}
    assert out["task0"]["worker_id"] == 2 and out["task0"]["task"] is True
    if mode == "thread":
        assert out["event1"]["pid"] == out["task0"]["pid"] == master
    else:
        assert len({master, out["event1"]["pid"], out["task0"]["pid"]}) == 3
    assert out["manager"]["worker_id"] == -1
    if mode != "process":
        assert out["manager"]["pid"] == master  # BASE: the master is the manager; THREAD: a thread of it
        assert out["reactor0"] == ["False", 507]  # no reactor threads in this mode
    else:
        assert out["manager"]["pid"] != master
        assert out["reactor0"]["pid"] == master  # a reactor thread of the master
    assert out["event_out_of_range"] == ["False", 505]
    assert json.loads(out["raw"])["data"] == [1]  # json_decode=False: the string as returned
    assert out["unknown"] == [False, 9012] and out["not_accepted"] == [False, 507] and out["raised"] == [False, 503]
    assert out["two_types"] == "ValueError"
    command(handle, "from_worker")
    assert handle.wait("from_worker")["error"] == "ContextError"  # the master only
    assert handle.stop() == 0
