"""The ``http`` case of the faults scenario: kill -9 of a worker and reloads under verified
HTTP/1.1 keep-alive load, PROCESS mode (the connections live in the master, so a dead or
restarting worker must cost no request and no connection).

The server is ``stress.servers.threadswoole_http --handler path --control`` (PROCESS, two
workers, one reactor thread); the load is `stress.checked_http.run_checked_http` from the
fault scenario's number of connections. A worker is killed every ``kill_every`` seconds
for ``kill_for`` seconds, then SIGUSR1 reloads every ``reload_every`` seconds for
``reload_for`` seconds, all under the same load. Rows: ``http failed`` (requests, must be 0)
and ``http lost`` (connections, must be 0), and the server must be healthy afterwards
(workers back, answering, ``connection_num`` back to its baseline).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Optional

from stress.checked import CheckedResult
from stress.checked_http import run_checked_http
from stress.proctree import ServerProcess
from stress.scenarios.common import HOST, http_stats, make_row, say, stop_server, wait_for, worker_pids

SERVER = "stress.servers.threadswoole_http"
MODES = ("process",)  # BASE / THREAD lose the dead worker's connections by design (the kill9 case)


def _connections(port: int) -> Optional[int]:
    stats = http_stats(port)
    return None if stats is None else stats["connection_num"] - 1  # not the probe itself


def _counts(res: CheckedResult) -> str:
    return (f"{res.ok} ok, {res.failed} failed ({res.timeouts} timed out on open connections), "
            f"{res.mismatches} mismatches, {res.lost} lost, {res.connect_failed} connect failures")


def http_case(mode: str, p: dict) -> list[dict[str, Any]]:
    if mode not in MODES:
        return []
    srv = ServerProcess(SERVER, ["--mode", mode, "--workers", "2", "--reactors", "1", "--handler", "path", "--control"],
                        host=HOST)
    srv.start()
    problems: list[str] = []
    events: list[str] = []
    res = CheckedResult()
    try:
        time.sleep(0.3)
        workers0 = worker_pids(srv)
        conn0 = _connections(srv.port)
        kill_for, reload_for = p["kill_for"], p["reload_for"]
        plan = [(t, "kill") for t in _times(1.0, kill_for, p["kill_every"])]
        plan += [(kill_for + t, "reload") for t in _times(1.0, reload_for, p["reload_every"])]

        def on_tick(elapsed: float) -> None:
            while plan and elapsed >= plan[0][0]:
                _, what = plan.pop(0)
                if what == "reload":
                    os.kill(srv.proc.pid, signal.SIGUSR1)
                    events.append(f"reload@{elapsed:.1f}s")
                    continue
                pids = worker_pids(srv)
                if pids:
                    victim = pids[len(events) % len(pids)]
                    try:
                        os.kill(victim, signal.SIGKILL)
                        events.append(f"kill {victim}@{elapsed:.1f}s")
                    except ProcessLookupError:
                        pass

        res = run_checked_http((HOST, srv.port), connections=p["conns"], duration=kill_for + reload_for + 1.0,
                               timeout=p["timeout"], on_tick=on_tick)
        if srv.proc.poll() is not None:
            problems.append(f"server died (rc={srv.proc.returncode}): {srv.stderr_summary()}")
        else:
            if not wait_for(lambda: len(worker_pids(srv)) == len(workers0), p["settle"]):
                problems.append(f"workers {len(workers0)} -> {len(worker_pids(srv))}")
            if conn0 is None or not wait_for(lambda: _connections(srv.port) == conn0, p["settle"]):
                problems.append(f"connection_num {conn0} -> {_connections(srv.port)} after every client left")
    finally:
        problems += stop_server(srv)
    problems += res.worker_errors
    kills = sum(1 for e in events if e.startswith("kill"))
    reloads = len(events) - kills
    say(f"{mode} http: {kills} kills, {reloads} reloads; {_counts(res)}")
    facts = f"{kills} kills and {reloads} reloads under {p['conns']} keep-alive connections ({', '.join(events)}); {_counts(res)}"
    ok_req = res.failed == 0 and res.mismatches == 0 and res.ok > 0 and not problems and kills and reloads
    ok_conn = res.lost == 0 and not problems
    detail = facts + "; must be 0" + "".join(f"; {x}" for x in problems)
    return [make_row("faults", mode, "http failed", res.failed, "req", ok_req, detail),
            make_row("faults", mode, "http lost", res.lost, "conn", ok_conn,
                     f"{res.lost} connections closed by the server under kill -9 / reload; must be 0")]


def _times(first: float, span: float, every: float) -> list[float]:
    times, t = [], first
    while t < span:
        times.append(t)
        t += every
    return times
