"""threadswoole task workers: one event worker keeps ``--inflight`` tasks in flight.

Written against the documented task API (api.md §7): ``task_worker_num`` = ``--task-workers``,
``on_task`` calls ``server.finish(data)`` (a ``--size``-byte echo), ``on_finish`` checks the
answer and sends the next task. Self-driven like ``executor_tasks``: after ``--warmup`` s
the event worker prints ``READY 0``, runs ``--duration`` s, prints ``RESULT {json}``; the
benchmark then stops the server. Prints ``SKIP <reason>`` while task workers are not
implemented (``task()`` raising NotImplementedError, or the setting refused).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.threadswoole_tasks")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("base", "process", "thread"), default="base")
    ap.add_argument("--task-workers", type=int, default=2)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    a = ap.parse_args(argv)
    from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD, Server

    modes = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
    payload = (b"task-payload-" * (a.size // 13 + 1))[:a.size]
    server = Server(a.host, a.port, modes[a.mode])
    try:
        server.set({"worker_num": 1, "task_worker_num": a.task_workers, "log_level": 4})
    except Exception as exc:
        print(f"SKIP task_worker_num refused: {type(exc).__name__}: {exc}", flush=True)
        return 0
    state = {"phase": "warmup", "end": 0.0, "start": 0.0, "done": 0, "errors": 0, "live": 0, "last": 0.0}

    def begin(srv, phase: str, seconds: float) -> None:
        state.update(phase=phase, start=time.monotonic(), done=0, errors=0, live=a.inflight)
        state["end"] = state["start"] + seconds
        for _ in range(a.inflight):
            srv.task(payload)

    def on_finish(srv, task_id, data) -> None:
        now = time.monotonic()
        ok = data == payload
        state["done"] += ok
        state["errors"] += not ok
        state["last"] = now
        if now < state["end"]:
            srv.task(payload)
            return
        state["live"] -= 1
        if state["live"]:
            return
        if state["phase"] == "warmup":
            print("READY 0", flush=True)
            begin(srv, "measure", a.duration)
        elif state["phase"] == "measure":
            state["phase"] = "done"
            took = state["last"] - state["start"]
            print("RESULT", json.dumps({"requests": state["done"], "errors": state["errors"],
                                        "duration": took, "rps": state["done"] / took if took else 0}),
                  flush=True)

    def on_worker_start(srv, worker_id) -> None:
        if srv.task_worker:
            return
        try:
            begin(srv, "warmup", a.warmup)
        except NotImplementedError as exc:
            print(f"SKIP task workers are not implemented yet ({exc})", flush=True)

    def on_task(srv, task_id, src_worker_id, data) -> None:
        srv.finish(data)          # returns None: exactly one finish per task

    server.on("receive", lambda srv, fd, reactor_id, data: None)
    server.on("task", on_task)
    server.on("finish", on_finish)
    server.on("worker_start", on_worker_start)
    try:
        ok = server.start()
    except NotImplementedError as exc:
        print(f"SKIP task workers are not implemented yet ({exc})", flush=True)
        return 0
    return 0 if ok in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
