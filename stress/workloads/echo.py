"""``bench echo``: raw TCP echo, in both regimes, threadswoole against its event-loop peers.

- **Python generator** (``stress.loadgen``, as the suite's comparison runs it): every answer
  checked byte for byte; on two cores the generator takes a core, so servers are often
  not saturated and per-wake-up costs weigh in.
- **C generator** (``stress.cgen``: the shared loadgen.c, else ``stress/cgen.c``; built at run
  time): 64-byte echo on 100 connections from one C thread; the server is saturated, the
  regime users compare servers in. The recorded targets (``BENCH_TARGETS["echo"]``) apply here.

Servers (``stress.bench.SERVERS``): stdlib asyncio stock and with 64 KiB reads, uvloop (from
the peer virtualenv), the leanest pure-Python epoll loop, threadswoole BASE worker_num=1,
PROCESS and THREAD (2 workers each).
"""
from __future__ import annotations

import argparse

from stress import benchkit, benchreport, cgen
from stress.bench import SERVERS, run_bench, workload_framing
from stress.benchkit import Spec
from stress.benchreport import Report
from stress.drivers import cgen_phase
from stress.thresholds import BENCH_TARGETS
from stress.workloads import Workload, apply_quick, common_options, names

DEFAULT = "asyncio,asyncio-64k,uvloop,epoll,threadswoole-base,threadswoole-process,threadswoole-thread"
PEERS = ["asyncio", "uvloop"]
NOTES = {
    "asyncio": "stdlib asyncio Protocol, stock (256 KiB reads)",
    "asyncio-64k": "stdlib asyncio Protocol, 64 KiB reads",
    "uvloop": "the same Protocol on uvloop (peer virtualenv)",
    "epoll": "bare level-triggered select.epoll loop, os.read/os.write on raw fds",
    "threadswoole-base": "threadswoole BASE, worker_num=1 (stress/servers/threadswoole_echo.py)",
    "threadswoole-process": "threadswoole PROCESS, worker_num=2, reactor_num=1",
    "threadswoole-thread": "threadswoole THREAD, worker_num=2, reactor_num=1",
}


def configure(ap: argparse.ArgumentParser) -> None:
    common_options(ap, duration=5.0, repeat=3, servers=DEFAULT)
    ap.add_argument("--regime", choices=("both", "python", "c"), default="both")
    ap.add_argument("-s", "--size", type=int, default=64)
    ap.add_argument("--peer", default="asyncio", help="the Python regime's ratio column")
    ap.add_argument("--pattern", choices=("reqresp", "pipelined"), default="reqresp",
                    help="Python regime only (the C generator does request/response)")
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--framing", choices=("none", "length"), default=None,
                    help="Python regime; the C generator sends raw echo only")
    ap.add_argument("--processes", type=int, default=None, help="Python generator processes")


def c_spec(name: str) -> Spec:
    spec = SERVERS[name]
    return benchkit.module_spec(name, spec.module, *spec.args, "--framing", "none", venv=spec.venv,
                                note=NOTES.get(name, ""))


def run(a: argparse.Namespace) -> Report:
    apply_quick(a)
    servers = names(a.servers, SERVERS)
    if a.list:
        for n, spec in SERVERS.items():
            fixed = f" (always framing {spec.framing}: Python regime only)" if spec.framing else ""
            print(f"{n:<30} {NOTES.get(n) or spec.module + ' ' + ' '.join(spec.args)}{fixed}")
        return None  # type: ignore[return-value]
    params = {k: getattr(a, k) for k in ("duration", "warmup", "repeat", "connections", "size",
                                         "regime", "gen_threads", "pattern", "framing")}
    rep = Report("echo", params)
    if a.regime in ("both", "python"):
        print("== echo, Python generator ...", flush=True)
        rows = run_bench(servers, duration=a.duration, connections=a.connections, size=a.size,
                         pattern=a.pattern, pipeline_depth=a.depth, framing=a.framing,
                         warmup=a.warmup, processes=a.processes, repeat=a.repeat, peer=a.peer,
                         host=a.host, progress=True, install=not a.no_install)
        for r in rows:
            r.setdefault("test", "")
            r.setdefault("skipped", None)
            r["note"] = NOTES.get(r["name"], "")
        benchreport.add_ratios(rows, [a.peer])
        fr = workload_framing(servers, a.framing)
        rep.sections.append((f"echo, Python generator (verified byte for byte): {a.size} B, "
                             f"{a.pattern}, framing {fr}", rows, [a.peer]))
    if a.regime in ("both", "c"):
        print("== echo, C generator ...", flush=True)
        rows = _c_regime(a, servers)
        benchreport.add_ratios(rows, PEERS)
        rep.sections.append((f"echo, C generator (saturated): {a.size} B, {a.connections} connections, "
                             f"{a.gen_threads} generator thread(s)", rows, PEERS))
        rep.verdicts = benchreport.evaluate(rows, BENCH_TARGETS["echo"])
        split = benchreport.cpu_split_lines(rows)
        if split:
            rep.notes += ["CPU split, C generator (server tree, psutil user/system, medians):"] + split + [""]
    rep.notes += [f"{n}: {NOTES[n]}" for n in servers if n in NOTES]
    rep.notes.append("req/cpu-s = requests / CPU seconds of the server's whole process tree in the "
                     "measured window (psutil); x peer = ratio of medians from the same run.")
    return rep


def _c_regime(a: argparse.Namespace, servers: list[str]) -> list[dict]:
    why = cgen.missing_reason()
    if a.framing == "length":
        why = "the C generator sends raw echo only (drop --framing length)"
    raw = [n for n in servers if SERVERS[n].framing is None]
    specs = [c_spec(n) for n in raw]
    if why:
        specs = [Spec(s.name, s.cmd, needs=(lambda why=why: why,), note=s.note) for s in specs]
    phase = cgen_phase(mode="echo", connections=a.connections, threads=a.gen_threads, size=a.size,
                       duration=a.duration, warmup=a.warmup)
    return benchkit.run_workload(specs, lambda spec: [phase], repeat=a.repeat, host=a.host,
                                 install=not a.no_install)


WORKLOADS = [Workload("echo", "TCP echo: Python-generator and saturated C-generator regimes", configure, run)]
