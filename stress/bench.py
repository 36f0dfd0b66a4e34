"""Benchmark runner: ``python -m stress.bench WORKLOAD`` (echo, http, http-blocking, wsgi,
asgi, ws, redis, tasks; see ``stress/workloads/`` and stress/README.md).

This module also holds the echo workload's Python-generator regime (``run_bench``,
used by the suite's comparison scenario too) and the echo server table ``SERVERS``.

Why: "is threadswoole fast?" only has an answer relative to a peer measured
in the same run on the same machine. Each server is started as a subprocess
(never two at once), driven by ``stress.loadgen.run_load`` with identical
parameters, sampled (tree RSS every 200 ms; tree CPU at the boundaries of the
measured window), stopped (SIGTERM, SIGKILL, orphans killed by PID), and
reported on one line with ratios to a peer (default ``asyncio``).

On a 2-core machine the load generator competes with the server for CPU, so
requests/s partly measures the generator; *requests per server CPU-second*
is the figure that shows the server's own cost.

Add a server: one ``ServerSpec`` line in ``SERVERS`` (``venv=True``: a peer run with the
benchmark virtualenv's python, ``stress.peers``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

from stress import peers
from stress._net import settle
from stress.loadgen import run_load
from stress.proctree import Sampler, ServerError, ServerProcess, ServerSkipped


@dataclass(frozen=True)
class ServerSpec:
    module: str                      # under stress.servers
    args: tuple[str, ...] = ()
    framing: Optional[str] = None    # None: follows the workload's framing; else fixed
    venv: bool = False               # a peer: runs with the benchmark virtualenv's python


_TS = "threadswoole_echo"
SERVERS: dict[str, ServerSpec] = {
    "threadswoole-base": ServerSpec(_TS, ("--mode", "base", "--workers", "1")),
    "threadswoole-base-w2": ServerSpec(_TS, ("--mode", "base", "--workers", "2")),
    "threadswoole-process": ServerSpec(_TS, ("--mode", "process", "--workers", "2", "--reactors", "1")),
    "threadswoole-thread": ServerSpec(_TS, ("--mode", "thread", "--workers", "2", "--reactors", "1")),
    "threadswoole-base-length": ServerSpec(_TS, ("--mode", "base", "--workers", "1"), "length"),
    "threadswoole-thread-w1": ServerSpec(_TS, ("--mode", "thread", "--workers", "1")),
    "threadswoole-thread-cpu-w1": ServerSpec(_TS, ("--mode", "thread", "--workers", "1", "--handler", "cpu")),
    "threadswoole-thread-cpu-w2": ServerSpec(_TS, ("--mode", "thread", "--workers", "2", "--handler", "cpu")),
    "threadswoole-thread-sleep-w1": ServerSpec(_TS, ("--mode", "thread", "--workers", "1", "--handler", "sleep")),
    "threadswoole-thread-sleep-w8": ServerSpec(_TS, ("--mode", "thread", "--workers", "8", "--handler", "sleep")),
    "asyncio": ServerSpec("asyncio_echo"),
    "asyncio-w2": ServerSpec("asyncio_echo", ("--workers", "2")),      # pre-forked: 3 processes
    "asyncio-length": ServerSpec("asyncio_echo", (), "length"),
    "asyncio-64k": ServerSpec("asyncio_echo", ("--recv-size", "65536")),  # stdlib minus the 256 KiB reads
    "uvloop": ServerSpec("asyncio_echo", ("--loop", "uvloop"), venv=True),  # same Protocol on uvloop
    "threaded": ServerSpec("threaded_echo"),
    "epoll": ServerSpec("epoll_echo"),
    "epoll-length": ServerSpec("epoll_echo", (), "length"),
    "threadswoole-process-length": ServerSpec(_TS, ("--mode", "process", "--workers", "2", "--reactors", "1"), "length"),
    "threadswoole-thread-length": ServerSpec(_TS, ("--mode", "thread", "--workers", "2"), "length"),
}

NOTE = ("note: on a 2-core machine the load generator competes with the server for CPU, so "
        "requests/s is partly the generator's limit; requests per server CPU-second (req/cpu-s) "
        "is the figure that shows the server's own cost. Figures from a busy machine are "
        "provisional: compare same-run ratios, re-measure in a quiet window.")

# figures that are medianed over --repeat runs and compared to the peer
FIGURES = ("rps", "p50_us", "p99_us", "p999_us", "peak_rss_mb", "cpu_s", "req_per_cpu_s",
           "cpu_util", "requests", "errors", "mismatches", "bytes_received",
           "connections_failed", "connections_lost")


def workload_framing(names: list[str], framing: Optional[str]) -> str:
    """The run's framing: ``--framing``, else the one ``-length`` servers need, else ``none``.

    A server with a fixed framing is always driven with its own (``server_framing``), so a
    framed and an unframed server can be compared in the same run.
    """
    fixed = {SERVERS[n].framing for n in names if SERVERS[n].framing}
    if framing:
        return framing
    return fixed.pop() if len(fixed) == 1 and all(SERVERS[n].framing for n in names) else "none"


def server_framing(name: str, run_framing: str) -> str:
    return SERVERS[name].framing or run_framing


def server_command(name: str, framing: str) -> tuple[str, list[str]]:
    spec = SERVERS[name]
    return f"stress.servers.{spec.module}", [*spec.args, "--framing", framing]


def unavailable(name: str, install: bool = True) -> Optional[str]:
    """Why server ``name`` cannot run here (the peer venv cannot be made), or None."""
    if not SERVERS[name].venv or peers.ready():
        return None
    if not install:
        return peers.missing_reason()
    try:
        peers.ensure()
    except Exception as exc:
        return f"peer virtualenv could not be created: {exc}"
    return None


def bench_one(name: str, *, framing: str, host: str = "127.0.0.1", install: bool = True,
              settle_first: bool = True, **load: Any) -> dict:
    """Start server ``name``, load it, stop it; return its figures (``ok`` False + ``error``
    on failure; ``skipped`` set when it cannot run here). ``settle_first``: one connection
    opened and closed before the load (``stress._net.settle``: the steady state)."""
    module, args = server_command(name, framing)
    row: dict[str, Any] = {"name": name, "ok": False, "error": "", "skipped": None, "test": ""}
    why = unavailable(name, install)
    if why:
        row["skipped"] = why
        return row
    srv = ServerProcess(module, args, host=host,
                        python=peers.python_path() if SERVERS[name].venv else None)
    sampler: Optional[Sampler] = None
    try:
        port = srv.start()
        if settle_first:
            settle((host, port))
        sampler = Sampler(srv.tree)
        sampler.start()
        res = run_load((host, port), framing=framing, on_window=sampler.set_window, **load)
        sampler.finish()
        cpu = None
        if sampler.cpu_start is not None and sampler.cpu_end is not None:
            cpu = sampler.cpu_end - sampler.cpu_start
        row.update(
            rps=res.rps(), requests=res.requests, p50_us=res.p50, p99_us=res.p99,
            p999_us=res.p999, errors=res.errors, mismatches=res.mismatches,
            bytes_received=res.bytes_received, bytes_sent=res.bytes_sent,
            connections_opened=res.connections_opened,
            connections_failed=res.connections_failed, connections_lost=res.connections_lost,
            peak_rss_mb=sampler.peak_rss / 2**20, cpu_s=cpu,
            req_per_cpu_s=(res.requests / cpu) if cpu else None,
            cpu_util=(cpu / res.duration) if cpu is not None and res.duration else None,
            duration=res.duration, worker_errors=res.worker_errors)
        if srv.proc.poll() is not None:
            row["error"] = f"server died during the run (rc={srv.proc.returncode}): {srv.stderr_summary()}"
        elif res.requests == 0:
            row["error"] = f"no request completed; {res.worker_errors} {srv.stderr_summary()}"
        else:
            row["ok"] = True
    except ServerSkipped as exc:
        row["skipped"] = str(exc)
    except ServerError as exc:
        row["error"] = f"server failed to start: {exc}"
        row["stderr"] = srv.stderr_final or ""
    except Exception as exc:  # keep the suite alive; record why
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if sampler is not None:
            sampler.finish()
        row["stop"] = srv.stop()
        left = srv.tree.survivors() if srv.tree else []
        if left:
            row["ok"] = False
            row["error"] += f" processes left behind: {[p.pid for p in left]}"
    return row


def _median_rows(name: str, runs: list[dict]) -> dict:
    good = [r for r in runs if r["ok"]]
    if not good:
        out = dict(runs[-1])
        out["runs"] = len(runs)
        return out
    out = dict(good[0])
    for f in FIGURES:
        vals = [r[f] for r in good if r.get(f) is not None]
        out[f] = statistics.median(vals) if vals else None
    out["runs"], out["runs_ok"] = len(runs), len(good)
    out["errors"] = sum(r.get("errors") or 0 for r in good)
    out["mismatches"] = sum(r.get("mismatches") or 0 for r in good)
    out["all_rps"] = [round(r["rps"]) for r in good]
    return out


def run_bench(servers: list[str], *, workload: str = "echo", duration: float = 10.0,
              connections: int = 100, size: int = 64, pattern: str = "reqresp",
              pipeline_depth: int = 16, framing: Optional[str] = None, warmup: float = 1.0,
              processes: Optional[int] = None, repeat: int = 1, peer: Optional[str] = "asyncio",
              host: str = "127.0.0.1", progress: bool = False, install: bool = True,
              settle_first: bool = True) -> list[dict]:
    """Benchmark ``servers`` (names from SERVERS) in turn; return one dict per server.

    With ``repeat`` > 1 the servers alternate (A B A B ...) and each figure is the
    median over the runs. Ratios ``rps_vs_peer`` / ``cpu_vs_peer`` are added when the
    peer is in the list and succeeded. A server that cannot run here is run once and
    reported ``skipped``.
    """
    if workload != "echo":
        raise ValueError(f"unknown workload {workload!r}")
    unknown = [n for n in servers if n not in SERVERS]
    if unknown:
        raise ValueError(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    fr = workload_framing(servers, framing)
    load = dict(duration=duration, connections=connections, message_size=size, pattern=pattern,
                pipeline_depth=pipeline_depth, processes=processes, warmup=warmup)
    runs: dict[str, list[dict]] = {n: [] for n in servers}
    for rnd in range(max(1, repeat)):
        for name in servers:
            if rnd and runs[name][-1].get("skipped"):
                continue
            row = bench_one(name, framing=server_framing(name, fr), host=host, install=install,
                            settle_first=settle_first, **load)
            runs[name].append(row)
            if progress:
                print("  ..", format_row(row), flush=True, file=sys.stderr)
    rows = [_median_rows(n, runs[n]) for n in servers]
    params = dict(workload=workload, framing=fr, repeat=repeat, **load)
    if peer and peer not in servers and f"{peer}-{fr}" in servers:
        peer = f"{peer}-{fr}"          # e.g. asyncio -> asyncio-length in a framed run
    ref = next((r for r in rows if r["name"] == peer and r["ok"]), None)
    for r in rows:
        r["params"], r["peer"] = params, peer
        r["rps_vs_peer"] = r["cpu_vs_peer"] = None
        if ref is not None and r["ok"]:
            r["rps_vs_peer"] = r["rps"] / ref["rps"] if ref["rps"] else None
            if r.get("req_per_cpu_s") and ref.get("req_per_cpu_s"):
                r["cpu_vs_peer"] = r["req_per_cpu_s"] / ref["req_per_cpu_s"]
    return rows


# ---- printing ----------------------------------------------------------------
def _fmt(v: Any, spec: str = ".0f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def format_row(r: dict) -> str:
    if r.get("skipped"):
        return f"{r['name']:<26} skipped: {r['skipped']}"
    if not r["ok"]:
        return f"{r['name']:<26} FAILED: {r['error'].strip()}"
    ratio = ""
    if r.get("rps_vs_peer") is not None:
        ratio = f"  vs {r['peer']}: rps x{r['rps_vs_peer']:.2f}, req/cpu-s x{_fmt(r.get('cpu_vs_peer'), '.2f')}"
    return (f"{r['name']:<26} {r['rps']:>9.0f} req/s  p50 {r['p50_us'] / 1000:7.2f} ms  "
            f"p99 {r['p99_us'] / 1000:7.2f} ms  rss {r['peak_rss_mb']:6.1f} MB  "
            f"{_fmt(r.get('req_per_cpu_s')):>7} req/cpu-s  cpu {_fmt(r.get('cpu_util'), '.0%')}"
            f"{ratio}" + (f"  ERR={r['errors']}" if r.get("errors") else "")
            + (f"  MISMATCH={r['mismatches']}" if r.get("mismatches") else ""))


def _header(workload: str, params: dict, load: Optional[tuple], seconds: float) -> list[str]:
    avg = " ".join(f"{x:.2f}" for x in load) if load else "?"
    return [f"bench {workload}: {time.strftime('%Y-%m-%d %H:%M:%S')}, took {seconds:.0f} s; "
            f"load average at start {avg}; CPython {platform.python_version()}, {os.cpu_count()} CPUs",
            "params: " + ", ".join(f"{k}={v}" for k, v in params.items()),
            NOTE]


def main(argv: Optional[list[str]] = None) -> int:
    from stress import benchreport
    from stress.workloads import all_workloads

    workloads = all_workloads()
    ap = argparse.ArgumentParser(prog="python -m stress.bench",
                                 description="threadswoole against its peers, one workload per command; "
                                             "see stress/README.md")
    sub = ap.add_subparsers(dest="workload", required=True, metavar="WORKLOAD")
    for w in workloads.values():
        sp = sub.add_parser(w.name, help=w.help, description=w.help)
        w.configure(sp)
        sp.add_argument("--host", default="127.0.0.1", help="loopback address the servers bind")
        sp.add_argument("--json", help="also write the figures to this file")
        sp.add_argument("--no-save", action="store_true", help="do not write stress/results/bench-*")
        sp.add_argument("--check-targets", action="store_true",
                        help="exit status 3 when a recorded target (stress/thresholds.py) fails")
    a = ap.parse_args(argv)
    w = workloads[a.workload]
    try:
        load_start = os.getloadavg()
    except OSError:
        load_start = None
    t0 = time.monotonic()
    try:
        rep = w.run(a)
    except ValueError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if rep is None:               # --list
        return 0
    lines = _header(w.name, rep.params, load_start, time.monotonic() - t0) + rep.lines()
    print("\n".join(lines))
    doc = {"workload": w.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "params": rep.params,
           "load_at_start": load_start, "python": platform.python_version(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "sections": [{"title": t, "rows": rows} for t, rows, _p in rep.sections],
           "targets": [v.__dict__ for v in rep.verdicts], "notes": rep.notes}
    if not a.no_save:
        print(f"results: {benchreport.save(w.name, doc, lines)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
    if rep.failed():
        return 1
    if a.check_targets and any(v.status == "FAIL" for v in rep.verdicts):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
