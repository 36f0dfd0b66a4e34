"""Capacity: 10,000 concurrent idle connections, then echo traffic on 1,000 of them.

Proves, per mode, that the server holds that many connections at once (every one
accepted and still open at the end: none refused, none dropped while idle), what one
connection costs in memory (RSS of the whole server tree after opening them minus before,
divided by their number), and that it still serves echo traffic at that size: 1,000 of
the 10,000 run request/response echo while the other 9,000 stay open and watched.

The connections are opened by 10 load-generator processes of 1,000 each, in parallel
(at most 200 handshakes in flight per process, so the 4,096-deep listen queue never
overflows). RLIMIT_NOFILE is raised in the runner (its load-generator children inherit
it) and by the server itself (``--rlimit-nofile``); ``max_conn`` is set above the count.
``--quick``: 2,000 connections, traffic on 500.
"""
from __future__ import annotations

import time
from typing import Any

from stress._net import raise_nofile
from stress.loadtools import ConnectionPool
from stress.proctree import Sampler
from stress.scenarios.common import (MODES, Server, guarded, make_row, mib, say,
                                     snapshot, stats, wait_for)
from stress.thresholds import threshold

NAME = "capacity"
MAX_SECONDS = 300
FULL = dict(connections=10_000, active=1_000, duration=5.0)
QUICK = dict(connections=2_000, active=500, duration=2.0)


def run_mode(mode: str, p: dict) -> list[dict[str, Any]]:
    th = threshold(NAME, mode)
    n, active = p["connections"], p["active"]
    extra = ["--max-conn", str(n + 1000), "--backlog", "4096", "--rlimit-nofile", str(n + 2000)]
    rows: list[dict[str, Any]] = []
    s = Server(mode, extra)
    with s as srv:
        port = srv.port
        time.sleep(0.3)
        rss0 = snapshot(srv)["rss"]
        with ConnectionPool(("127.0.0.1", srv.port), n, framing="length", size=64) as pool:
            t0 = time.monotonic()
            opened, failed = pool.open()
            open_s = time.monotonic() - t0
            wait_for(lambda: (stats(port) or {}).get("connection_num", 0) - 1 >= n, 10)
            st = stats(port) or {}
            held = st.get("connection_num", 0) - 1
            time.sleep(0.5)
            snap = snapshot(srv)
            per_conn = (snap["rss"] - rss0) / max(1, opened)
            say(f"{mode}: {opened} open in {open_s:.1f}s, server holds {held}, "
                f"rss {mib(rss0):.1f} -> {mib(snap['rss']):.1f} MiB, fds {snap['fds']}")
            sampler = Sampler(srv.tree)
            sampler.start()
            res = pool.traffic(active, p["duration"], on_window=sampler.set_window)
            sampler.finish()
            still_open = pool.open_count()
            pool_errors = list(pool.errors)
    problems = s.problems + pool_errors
    say(f"{mode}: traffic {res.summary()}; still open {still_open}")
    ok_conns = opened == n and held >= n and still_open == n and not pool_errors
    rows.append(make_row(NAME, mode, "connections", opened, "conn", ok_conns,
                         f"server holds {held} (stats), opened in {open_s:.1f}s, "
                         f"{still_open} still open after traffic; failed {failed}"
                         + (f"; abort_count {st.get('abort_count')}" if st.get("abort_count") else "")
                         + (f"; {'; '.join(pool_errors)}" if pool_errors else "")))
    limit = th.get("max_rss_per_conn_kib", 0)
    rows.append(make_row(NAME, mode, "rss/conn", per_conn / 1024, "KiB",
                         bool(opened) and per_conn / 1024 <= limit,
                         f"tree RSS {mib(rss0):.1f} -> {mib(snap['rss']):.1f} MiB for {opened} conns "
                         f"(need <= {limit} KiB); {snap['fds']} fds; peak under traffic "
                         f"{mib(sampler.peak_rss):.1f} MiB"))
    clean = res.requests > 0 and res.mismatches == 0 and res.errors == 0 and res.connections_lost == 0
    min_rps = th.get("min_rps", 0)
    why = []
    if res.mismatches or res.errors or res.connections_lost:
        why.append(f"mismatches {res.mismatches}, errors {res.errors}, lost {res.connections_lost}")
    if problems:
        why.append("; ".join(problems))
    rows.append(make_row(NAME, mode, f"echo on {active}", res.rps(), "req/s",
                         clean and res.rps() >= min_rps and not problems,
                         f"p50 {res.p50 / 1000:.1f} ms, p99 {res.p99 / 1000:.1f} ms, with "
                         f"{n - active} idle alongside (need >= {min_rps} req/s)"
                         + (f"; {'; '.join(why)}" if why else "")))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    p = QUICK if quick else FULL
    raise_nofile(p["connections"] + 2000)
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        rows += guarded(NAME, mode, lambda: run_mode(mode, p))
    return rows
