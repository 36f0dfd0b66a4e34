"""Tasks under faults: a task worker killed every 2 s while tasks are in flight.

Server: ``stress/servers/threadswoole_task_faults.py``, one event worker keeping 16 tasks in
flight to 2 task workers (an echo of a sequence number), for each mode. For 8 s (``--quick``:
4 s) a task worker is killed every 2 s, alternating: ``kill -9`` of its process in BASE and
PROCESS; in THREAD mode, where a thread cannot be killed, the next task that worker runs raises
a BaseException no handler catches and its thread's loop dies (the supervisor starts a new one).
Then the load runs 3 s more (a task unanswered 2 s after it was sent counts as lost).

Reported: tasks completed, tasks lost, kills. A killed task worker loses only the task it was
running (the ones queued behind it are read by its replacement), so **lost <= kills** is the
pass condition, plus: the load still completes tasks after the last kill, both task workers
are back, no process, shared-memory segment or task temp file is left after the stop.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import socket
import time
from typing import Any, Optional

from stress.proctree import ServerProcess
from stress.scenarios.common import HOST, MODES, guarded, make_row, say, shm_segments

NAME = "tasks"
MAX_SECONDS = 150
MODULE = "stress.servers.threadswoole_task_faults"
FULL = dict(kill_for=8.0, kill_every=2.0, settle=3.0)
QUICK = dict(kill_for=4.0, kill_every=2.0, settle=3.0)


def _ask(port: int, text: str, timeout: float = 3.0) -> Optional[dict]:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(text.encode())
            line = b""
            while not line.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                line += chunk
            return json.loads(line)
    except (OSError, ValueError):
        return None


def _one(mode: str, p: dict) -> list[dict[str, Any]]:
    srv = ServerProcess(MODULE, ["--mode", mode, "--task-workers", "2", "--inflight", "16"], host=HOST)
    srv.start()
    problems: list[str] = []
    kills: list[str] = []
    start: dict = {}
    after_kills: dict = {}
    end: dict = {}
    try:
        time.sleep(0.5)
        start = _ask(srv.port, "stats") or {}
        began = time.monotonic()
        next_kill = began + p["kill_every"] / 2
        while time.monotonic() - began < p["kill_for"]:
            now = time.monotonic()
            if now >= next_kill:
                next_kill += p["kill_every"]
                index = len(kills) % 2
                if mode == "thread":
                    if _ask(srv.port, f"die {index}") is not None:
                        kills.append(f"task worker {index}")
                else:
                    pids = (_ask(srv.port, "stats") or {}).get("task_pids") or []
                    if len(pids) > index and pids[index]:
                        try:
                            os.kill(pids[index], signal.SIGKILL)
                            kills.append(str(pids[index]))
                        except ProcessLookupError:
                            pass
            time.sleep(0.05)
        after_kills = _ask(srv.port, "stats") or {}
        time.sleep(p["settle"])
        end = _ask(srv.port, "stats") or {}
        if not end:
            problems.append("the server does not answer after the kills")
        task_pids = end.get("task_pids") or []
        if mode != "thread" and (len([pid for pid in task_pids if pid and os.path.exists(f"/proc/{pid}")]) != 2):
            problems.append(f"task workers not all back: {task_pids}")
    finally:
        pid = srv.proc.pid if srv.proc else 0
        status = srv.stop()
        if status != "term":
            problems.append(f"stop: {status}")
        left = srv.tree.survivors() if srv.tree else []
        if left:
            problems.append(f"processes left behind: {[q.pid for q in left]}")
            for q in left:
                q.kill()
        if pid and shm_segments(pid):
            problems.append(f"shared memory left: {shm_segments(pid)}")
        if pid and glob.glob(f"/tmp/threadswoole-task-{pid}-*"):
            problems.append("task temp files left")
    done = end.get("done", 0) - start.get("done", 0)
    lost = end.get("lost", 0) - start.get("lost", 0)
    still_going = end.get("done", 0) > after_kills.get("done", 0)
    if not still_going:
        problems.append("no task completed after the last kill")
    elapsed = p["kill_for"] + p["settle"]
    say(f"{mode} tasks: {len(kills)} kills ({', '.join(kills)}), {done} tasks done ({done / elapsed:,.0f}/s), {lost} lost, {end.get('late', 0)} late")
    ok = lost <= len(kills) and len(kills) > 0 and not problems
    detail = (f"{len(kills)} task-worker kills every {p['kill_every']:.0f} s for {p['kill_for']:.0f} s under 16 tasks in flight; "
              f"{done} tasks done, {lost} lost (need <= one per kill: the task it was running), {end.get('late', 0)} late"
              + "".join(f"; {x}" for x in problems))
    return [make_row(NAME, mode, "task kill9 lost", lost, "tasks", ok, detail),
            make_row(NAME, mode, "task kill9 done", done / elapsed, "tasks/s", still_going and not problems, detail)]


def run(quick: bool = False, modes: Optional[list[str]] = None) -> list[dict[str, Any]]:
    p = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    for mode in modes or MODES:
        rows += guarded(NAME, mode, lambda: _one(mode, p))
    return rows
