"""Comparison scenario: threadswoole echo vs the stdlib peers, in the same run.

Runs ``stress.bench.run_bench`` once over the threadswoole servers (one per
mode: BASE worker_num=1, PROCESS, THREAD) and the stdlib peers ``asyncio``
and ``threaded``, alternating them when repeating, and turns the figures
into rows: requests/s, requests per server CPU-second and p99 latency, each
with its ratio to the asyncio peer. BASE is judged against the thresholds in
``stress/thresholds.py``; PROCESS/THREAD rows are informational (they pass
when the server ran cleanly). A mode whose server fails to start gives a
failed row carrying the error; the suite goes on.
"""
from __future__ import annotations

from typing import Any

from stress.bench import run_bench
from stress.scenarios.common import make_row
from stress.thresholds import threshold

NAME = "comparison"
MAX_SECONDS = 420
MODES = {"base": "threadswoole-base", "process": "threadswoole-process",
         "thread": "threadswoole-thread"}
PEERS = ["asyncio", "threaded"]
PEER = "asyncio"
FULL = dict(duration=5.0, warmup=1.0, repeat=3, connections=100, size=64)
QUICK = dict(duration=2.0, warmup=0.5, repeat=1, connections=50, size=64)


def _clean(r: dict) -> tuple[bool, str]:
    if not r["ok"]:
        return False, r["error"].strip()
    if r.get("mismatches"):
        return False, f"{r['mismatches']} responses not byte-exact"
    if r.get("errors"):
        return False, f"{r['errors']} request errors"
    return True, ""


def _ratio(r: dict, key: str) -> str:
    v = r.get(key)
    return f"x{v:.2f} {PEER}" if v is not None else f"no {PEER} figure"


def rows_for(mode: str, r: dict, by_name: dict[str, dict]) -> list[dict[str, Any]]:
    ok, why = _clean(r)
    if not ok:
        return [make_row(NAME, mode, "run", None, "", False, why)]
    th = threshold(NAME, mode)
    others = ", ".join(f"{p} x{r['rps'] / by_name[p]['rps']:.2f}" for p in PEERS
                       if p not in (PEER, r["name"]) and by_name.get(p, {}).get("ok") and by_name[p]["rps"])
    cpu_ok = rps_ok = True
    cpu_need = rps_need = ""
    if "min_cpu_ratio" in th:
        cpu_ok = (r.get("cpu_vs_peer") or 0) >= th["min_cpu_ratio"]
        cpu_need = f" (need >= x{th['min_cpu_ratio']})"
    if "min_rps_ratio" in th:
        rps_ok = (r.get("rps_vs_peer") or 0) >= th["min_rps_ratio"]
        rps_need = f" (need >= x{th['min_rps_ratio']})"
    runs = f"; runs {r.get('all_rps')}" if r.get("all_rps") and len(r["all_rps"]) > 1 else ""
    if r.get("stop") not in (None, "term"):
        runs += f"; shutdown: {r['stop']}"     # e.g. needed SIGKILL, or left orphans
    return [
        make_row(NAME, mode, "req/cpu-s", r.get("req_per_cpu_s"), "req/cpu-s", cpu_ok,
                 _ratio(r, "cpu_vs_peer") + cpu_need + f"; server cpu {r.get('cpu_util') or 0:.0%}"),
        make_row(NAME, mode, "req/s", r["rps"], "req/s", rps_ok,
                 _ratio(r, "rps_vs_peer") + rps_need + (f"; {others}" if others else "") + runs),
        make_row(NAME, mode, "p99", r["p99_us"] / 1000, "ms", True,
                 f"p50 {r['p50_us'] / 1000:.2f} ms; peak rss {r['peak_rss_mb']:.1f} MB"),
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    params = QUICK if quick else FULL
    names = list(MODES.values()) + PEERS
    results = run_bench(names, peer=PEER, **params)
    by_name = {r["name"]: r for r in results}
    rows: list[dict[str, Any]] = []
    for mode, name in MODES.items():
        rows += rows_for(mode, by_name[name], by_name)
    for peer in PEERS:
        rows += rows_for(peer, by_name[peer], by_name)
    return rows
