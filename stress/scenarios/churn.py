"""Churn: 50,000 connect / send / receive-the-echo / close cycles, then nothing leaked.

Proves, per mode, that a connection leaves nothing behind once it is closed: after the
cycles (4 client processes, one connection at a time each, every echo checked) and a
short settle, the server tree has exactly the open fds, threads and processes (same
pids: no worker crashed or was replaced) it had before, the master's shared-memory
segments in /dev/shm are exactly the baseline ones, ``stats()['connection_num']`` is
back to its baseline, and memory grew by at most the tolerance; after the server stops no
``/dev/shm/threadswoole_<master pid>_*`` segment is left.

Memory is judged on the tree's anonymous RSS (private heap; total RSS also counts the
pages of the shared-memory session table each process has touched so far, which grows
until the whole segment is mapped: bounded, not a leak; it is reported alongside), with
the tolerance of ``thresholds.py``: the larger of 15 MiB and 20 % of the baseline. Why a
tolerance at all: CPython does not give freed memory back to the OS eagerly (pymalloc
keeps arenas with a live object in them, glibc keeps freed heap) and dicts keep the size
they grew to. A leak of 300 bytes per connection would still show as 15 MiB.
In PROCESS mode the master keeps each closed session's record for up to 10 s (a one-shot
timer per close, not cleared when the worker acknowledges the close), so its memory right
after the cycles tracks the close rate (about 9 MiB at 3,000 closes/s); it is measured
again once those timers have run (11 s), and the figure right after is reported.

The baseline is taken after a warm-up of 500 cycles (lazy allocations are done by then).
``--quick``: 5,000 cycles, and no wait for the PROCESS hold timers.
"""
from __future__ import annotations

import time
from typing import Any

from stress.loadtools import run_churn
from stress.scenarios.common import (MODES, connection_count_report, connection_num, guarded,
                                     make_row, mib, say, Server, server_warnings, settled_snapshot,
                                     shm_segments, snapshot, wait_for)
from stress.thresholds import threshold

NAME = "churn"
MAX_SECONDS = 300
HOLD_SECONDS = 11.0      # PROCESS: a closed session's record is held up to 10 s (RECORD_HOLD_MS)
FULL = dict(cycles=50_000, processes=4, warmup=500, hold_wait=True)
QUICK = dict(cycles=5_000, processes=4, warmup=200, hold_wait=False)


def run_mode(mode: str, p: dict) -> list[dict[str, Any]]:
    th = threshold(NAME, mode)
    s = Server(mode)
    with s as srv:
        port = srv.port
        addr = ("127.0.0.1", port)
        run_churn(addr, p["warmup"], processes=p["processes"], framing="length")
        wait_for(lambda: connection_num(port) == 0, 3)
        conn0 = connection_num(port)
        before = settled_snapshot(srv)
        res = run_churn(addr, p["cycles"], processes=p["processes"], framing="length",
                        max_seconds=MAX_SECONDS / 3 - 30)
        res_end = time.monotonic()
        right_after = snapshot(srv)
        wait_for(lambda: connection_num(port) == conn0, 5)
        conn1 = connection_num(port)
        conn_report = connection_count_report(port, conn0) if conn1 != conn0 else ""
        if conn_report and server_warnings(srv):
            conn_report += f"; server log: {server_warnings(srv)}"
        after = settled_snapshot(srv, target=before, timeout=5)
        if mode == "process" and p["hold_wait"]:
            # closed sessions' records are held for 10 s (one timer each, so memory tracks
            # the close rate); judge memory once those have expired
            time.sleep(max(0.0, HOLD_SECONDS - (time.monotonic() - res_end)))
            after = settled_snapshot(srv, target=before, timeout=5)
        master = srv.proc.pid
    left_shm = shm_segments(master)
    problems = s.problems
    say(f"{mode}: {res.cycles} cycles in {res.elapsed:.1f}s ({res.rate():.0f}/s), failed {res.failed}; "
        f"fds {before['fds']}->{after['fds']}, threads {before['threads']}->{after['threads']}, "
        f"anon rss {mib(before['anon']):.1f}->{mib(right_after['anon']):.1f}->{mib(after['anon']):.1f} MiB, "
        f"connection_num {conn0}->{conn1}")
    rows = []
    ok = res.cycles == p["cycles"] and res.failed == 0 and res.mismatches == 0 and not res.worker_errors
    rows.append(make_row(NAME, mode, "cycles/s", res.rate(), "cycle/s", ok,
                         f"{res.cycles}/{p['cycles']} cycles in {res.elapsed:.1f}s, failed {res.failed}, "
                         f"mismatches {res.mismatches}"
                         + (f"; {res.worker_errors}" if res.worker_errors else "")))
    leaks = []
    if after["fds"] != before["fds"]:
        leaks.append(f"fds {before['fds']} -> {after['fds']}")
    if after["threads"] != before["threads"]:
        leaks.append(f"threads {before['threads']} -> {after['threads']}")
    if after["pids"] != before["pids"]:
        leaks.append(f"processes {before['pids']} -> {after['pids']}")
    if after["shm"] != before["shm"]:
        leaks.append(f"shm {before['shm']} -> {after['shm']}")
    if conn1 != conn0:
        leaks.append(f"connection_num {conn0} -> {conn1} 5 s after the cycles: {conn_report}")
    if left_shm:
        leaks.append(f"after stop: {left_shm} left in /dev/shm")
    leaks += problems
    rows.append(make_row(NAME, mode, "leaked", len(leaks), "items", not leaks,
                         "; ".join(leaks) if leaks else
                         f"fds {after['fds']}, threads {after['threads']}, {len(after['pids'])} processes "
                         f"(same pids), {len(after['shm'])} shm segments, connection_num {conn1}: all as "
                         f"before; none left after stop"))
    grow = after["anon"] - before["anon"]
    allow = max(th.get("rss_tolerance_mib", 15) * 2**20, th.get("rss_tolerance_pct", 20) / 100 * before["anon"])
    rows.append(make_row(NAME, mode, "rss growth", mib(grow), "MiB", grow <= allow,
                         f"anon RSS {mib(before['anon']):.1f} -> {mib(after['anon']):.1f} MiB "
                         f"(allowed +{mib(allow):.1f}; right after the cycles "
                         f"{mib(right_after['anon']):.1f}); total RSS {mib(before['rss']):.1f} -> "
                         f"{mib(after['rss']):.1f} MiB (with shared-memory pages)"))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    p = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        rows += guarded(NAME, mode, lambda: run_mode(mode, p))
    return rows
