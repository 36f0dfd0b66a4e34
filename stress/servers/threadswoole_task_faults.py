"""A threadswoole server under constant task load, for the ``tasks`` stress scenario.

One event worker keeps ``--inflight`` tasks in flight to ``--task-workers`` task workers; each
task is a sequence number that the task worker echoes (``return data``). A task whose result has
not come back ``--lost-after`` seconds after it was sent is counted lost and replaced, so the
load goes on whatever happens to the task workers. The listening port answers control packets
(one per connection, a JSON line back):

- ``stats``: ``{"sent", "done", "lost", "late", "inflight", "task_pids"}`` (``late``: results
  that came after their task was counted lost; ``task_pids``: the task workers' pids now);
- ``die <k>``: THREAD mode's kill -9 (a thread cannot be killed): task worker ``k`` raises a
  BaseException out of the next task it runs, which ends that thread's loop like a crash.

Prints ``READY <port>`` once the event worker runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


class Killed(BaseException):
    """Escapes every handler: the task worker thread's loop dies."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.threadswoole_task_faults")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("base", "process", "thread"), default="process")
    ap.add_argument("--task-workers", type=int, default=2)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--lost-after", type=float, default=2.0)
    a = ap.parse_args(argv)
    from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD, Server

    modes = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
    server = Server(a.host, a.port, modes[a.mode])
    server.set({"worker_num": 1, "task_worker_num": a.task_workers, "log_level": 4, "max_wait_time": 1})
    state = {"next": 0, "sent": 0, "done": 0, "lost": 0, "late": 0}
    outstanding: dict[int, float] = {}
    doomed: set[int] = set()  # THREAD mode: task workers (pool index) to kill at their next task

    def send(srv) -> None:
        seq = state["next"]
        state["next"] += 1
        if srv.task(seq) is not False:
            outstanding[seq] = time.monotonic()
            state["sent"] += 1

    def on_finish(srv, task_id, seq) -> None:
        if outstanding.pop(seq, None) is None:
            state["late"] += 1
            return
        state["done"] += 1
        send(srv)

    def expire(srv, _timer_id) -> None:
        limit = time.monotonic() - a.lost_after
        for seq in [s for s, sent in outstanding.items() if sent < limit]:
            del outstanding[seq]
            state["lost"] += 1
            send(srv)

    def on_task(srv, task_id, src, seq):
        index = srv.worker_id - srv.setting["worker_num"]
        if index in doomed:
            doomed.discard(index)
            raise Killed()
        return seq

    def on_receive(srv, fd, reactor_id, data) -> None:
        words = data.decode().split()
        if words[:1] == ["die"]:
            doomed.add(int(words[1]))
            srv.send(fd, b'{"ok": true}\n')
            return
        pids = [srv.get_worker_pid(srv.setting["worker_num"] + i) for i in range(a.task_workers)]
        srv.send(fd, json.dumps({**state, "inflight": len(outstanding), "task_pids": pids}).encode() + b"\n")

    def on_worker_start(srv, worker_id) -> None:
        if srv.task_worker:
            return
        srv.tick(200, lambda timer_id: expire(srv, timer_id))
        for _ in range(a.inflight):
            send(srv)
        print(f"READY {srv.ports[0].port}", flush=True)

    server.on("receive", on_receive)
    server.on("task", on_task)
    server.on("finish", on_finish)
    server.on("worker_start", on_worker_start)
    return 0 if server.start() else 1


if __name__ == "__main__":
    sys.exit(main())
