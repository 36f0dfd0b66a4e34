"""``bench ws``: WebSocket echo under the C generator, then the push fan-out figure.

Echo: the C generator (``stress.cgen``) in ``-m ws`` (100 connections, each upgrades, then
sends a 64-byte masked binary frame and waits for the whole echo before the next) against threadswoole's
``websocket.Server`` in each mode, aiohttp and websockets (from the peer virtualenv, stock
asyncio loop). Targets: ``BENCH_TARGETS["ws"]``.

Fan-out (``--fanout N``, default 10,000; 0 skips it): the same servers started with
``--fanout`` hold N client connections (``stress.wsfanout``: holder processes of 1,000, the
open-files limit raised); one message is pushed through the server to all of them,
``--fanout-rounds`` times; the figure is the time from sending it to the last client having
it (median over rounds), with the median client's time beside it.
"""
from __future__ import annotations

import argparse

from stress import benchkit, benchreport, cgen
from stress.benchkit import Phase, Spec
from stress.benchreport import Report
from stress.drivers import cgen_phase
from stress.thresholds import BENCH_TARGETS
from stress.workloads import Workload, apply_quick, common_options, names
from stress.wsfanout import run_fanout


_ts_ws_missing = benchkit.api_missing("threadswoole.websocket", "Server")


def _ts(name: str, mode: str, workers: int, *extra: str, note: str) -> tuple[str, tuple, bool, tuple, str]:
    return (name, ("threadswoole_ws", "--mode", mode, "--workers", str(workers), *extra), False,
            (_ts_ws_missing,), note)


# name -> (module + args, venv?, needs, note)
TABLE = {t[0]: t[1:] for t in [
    _ts("threadswoole-base", "base", 1, note="threadswoole websocket.Server BASE, worker_num=1"),
    _ts("threadswoole-process", "process", 2, "--reactors", "1",
        note="threadswoole websocket.Server PROCESS, worker_num=2, reactor_num=1"),
    _ts("threadswoole-thread", "thread", 2, "--reactors", "1",
        note="threadswoole websocket.Server THREAD, worker_num=2, reactor_num=1"),
    ("aiohttp", ("aiohttp_ws",), True, (), "aiohttp WebSocketResponse echo, stock asyncio loop"),
    ("websockets", ("websockets_ws",), True, (), "websockets (asyncio implementation) echo, stock asyncio"),
]}
PEERS = ["aiohttp", "websockets"]


def spec(name: str, *extra: str, echo: bool = True) -> Spec:
    """The server; ``echo``: driven by the C generator (the fan-out pool is Python)."""
    (module, *args), venv, needs, note = TABLE[name]
    if echo:
        needs = (*needs, cgen.missing_reason)
    return benchkit.module_spec(name, module, *args, *extra, venv=venv, needs=needs, note=note)


def configure(ap: argparse.ArgumentParser) -> None:
    common_options(ap, duration=5.0, repeat=3, servers=",".join(TABLE))
    ap.add_argument("-s", "--size", type=int, default=64, help="payload bytes per frame")
    ap.add_argument("--fanout", type=int, default=10000, help="clients for the push figure (0: skip it)")
    ap.add_argument("--fanout-rounds", type=int, default=3)


def run(a: argparse.Namespace) -> Report:
    apply_quick(a)
    wanted = names(a.servers, TABLE)
    if a.list:
        for n, t in TABLE.items():
            print(f"{n:<24} {t[-1]}")
        return None  # type: ignore[return-value]
    params = {k: getattr(a, k) for k in ("duration", "warmup", "repeat", "connections", "size",
                                         "gen_threads", "fanout", "fanout_rounds")}
    rep = Report("ws", params)
    print("== ws echo ...", flush=True)
    phase = cgen_phase(mode="ws", connections=a.connections, threads=a.gen_threads, size=a.size,
                       duration=a.duration, warmup=a.warmup)
    rows = benchkit.run_workload([spec(n) for n in wanted], lambda s: [phase], repeat=a.repeat,
                                 host=a.host, install=not a.no_install)
    shown = [p for p in PEERS if p in wanted]
    benchreport.add_ratios(rows, shown)
    rep.sections.append((f"WebSocket echo, C generator: {a.size} B masked binary frames, "
                         f"{a.connections} connections, {a.gen_threads} generator thread(s)", rows, shown))
    rep.verdicts = benchreport.evaluate(rows, BENCH_TARGETS["ws"])
    if a.fanout > 0:
        print(f"== ws push fan-out to {a.fanout} clients ...", flush=True)
        fan = _fanout(a, wanted)
        rep.notes += fanout_lines(fan, a.fanout) + [""]
        rep.failures += [f"fan-out {r['name']}: {r['error']}" for r in fan if not r["ok"] and not r.get("skipped")]
    rep.notes += [f"{n}: {TABLE[n][-1]}" for n in wanted]
    return rep


def _fanout(a: argparse.Namespace, wanted: list[str]) -> list[dict]:
    def go(host: str, port: int) -> dict:
        res = run_fanout((host, port), a.fanout, rounds=a.fanout_rounds, size=a.size)
        res["requests"] = res["received"]
        res["errors"] = sum(r["mismatches"] + r["closed"] for r in res["rounds"]) + len(res["errors"])
        if res["received"] < a.fanout:      # a client that never got the push: not a figure
            raise RuntimeError(f"only {res['received']} of {a.fanout} clients got the push "
                               f"(opened {res['opened']}, errors {res['errors']})")
        return res
    specs = [spec(n, "--fanout", "--rlimit-nofile", str(a.fanout + 1024), echo=False) for n in wanted]
    rows = benchkit.run_workload(specs, lambda s: [Phase(go, "fanout")], repeat=1, host=a.host,
                                 install=not a.no_install)
    return rows


def fanout_lines(rows: list[dict], clients: int) -> list[str]:
    out = [f"push fan-out: one 64-byte frame to {clients} connected clients (median over rounds)",
           f"{'server':<22} {'last ms':>9} {'p50 ms':>9} {'received':>9} {'open s':>7}  rounds (last ms)"]
    for r in rows:
        if r.get("skipped") or not r["ok"]:
            out.append(f"{r['name']:<22} {'skipped: ' + r['skipped'] if r.get('skipped') else 'FAILED: ' + r['error']}")
            continue
        rounds = ", ".join(benchreport.fmt(x["last_ms"], ".1f") for x in r.get("rounds", []))
        warn = f"  ERR={r['errors']}" if r.get("errors") else ""
        out.append(f"{r['name']:<22} {benchreport.fmt(r.get('last_ms'), '.1f'):>9} "
                   f"{benchreport.fmt(r.get('p50_ms'), '.1f'):>9} {r.get('received', 0):>9} "
                   f"{benchreport.fmt(r.get('open_s'), '.1f'):>7}  {rounds}{warn}")
    return out


WORKLOADS = [Workload("ws", "WebSocket echo (C generator) and push fan-out to 10,000 clients", configure, run)]
