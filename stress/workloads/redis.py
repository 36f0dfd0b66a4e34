"""``bench redis``: ``redis-benchmark`` against redis-server and threadswoole's Redis example.

Per server, each test (``ping_inline``, ``ping_mbulk``, ``set``, ``get``) is its own
``redis-benchmark -n N -c 50 -P P -t TEST --csv`` run (``-q``'s figures, machine-readable),
with ``-P 1`` and ``-P 16``, so that each has its own CPU window. ``redis-server`` is started
by the benchmark on a private 127.0.0.1 port with no persistence (``--save "" --appendonly
no``, working directory a temp dir) and stopped by PID. threadswoole's side is
``examples/redis_kv.py --port P --mode M --workers N`` (another engineer's; skipped while
it is missing). Targets: ``BENCH_TARGETS["redis"]``.
"""
from __future__ import annotations

import argparse
import os
import tempfile

from stress import benchkit, benchreport
from stress.benchkit import ROOT, Spec
from stress.benchreport import Report
from stress.drivers import redis_phase, redis_probe, redis_tools_missing
from stress.thresholds import BENCH_TARGETS
from stress.workloads import Workload, common_options, names

EXAMPLE = os.path.join(ROOT, "examples", "redis_kv.py")
TESTS = ("ping_inline", "ping_mbulk", "set", "get")


def _example_missing():
    return None if os.path.isfile(EXAMPLE) else "examples/redis_kv.py does not exist yet"


def _ts(name: str, mode: str, workers: int) -> Spec:
    return Spec(name, ("{python}", EXAMPLE, "--port", "{port}", "--mode", mode, "--workers", str(workers)),
                probe=redis_probe, needs=(redis_tools_missing, _example_missing),
                note=f"examples/redis_kv.py --mode {mode} --workers {workers}")


TABLE = {s.name: s for s in [
    Spec("redis-server", ("redis-server", "--port", "{port}", "--bind", "{host}", "--save", "",
                          "--appendonly", "no", "--daemonize", "no", "--logfile", "",
                          "--dir", tempfile.gettempdir()),
         probe=redis_probe, needs=(redis_tools_missing,),
         note="redis-server (Debian), no persistence, single-threaded I/O"),
    _ts("threadswoole-base", "base", 1),
    _ts("threadswoole-process", "process", 2),
    _ts("threadswoole-thread", "thread", 2),
]}


def configure(ap: argparse.ArgumentParser) -> None:
    common_options(ap, duration=0.0, repeat=1, servers=",".join(TABLE), connections=50)
    ap.add_argument("-n", "--requests", type=int, default=200000, help="requests per test")
    ap.add_argument("--requests-pipelined", type=int, default=None,
                    help="requests per test with -P > 1 (default: -n; raise it for a finer CPU figure "
                         "of redis-server, which does 200,000 pipelined requests in ~0.1 CPU-s)")
    ap.add_argument("--pipelines", default="1,16", help="comma-separated -P values")
    ap.add_argument("--tests", default=",".join(TESTS))


def run(a: argparse.Namespace) -> Report:
    if a.quick:
        a.requests, a.repeat = min(a.requests, 20000), 1
    pipelined = a.requests_pipelined or a.requests
    wanted = names(a.servers, TABLE)
    if a.list:
        for n, s in TABLE.items():
            print(f"{n:<22} {s.note}")
        return None  # type: ignore[return-value]
    pipelines = [int(p) for p in a.pipelines.split(",") if p.strip()]
    tests = [t.strip() for t in a.tests.split(",") if t.strip()]
    phases = [redis_phase(t, requests=a.requests if p == 1 else pipelined, clients=a.connections, pipeline=p,
                          warmup_requests=(min(20000, a.requests) if i == 0 else 0))
              for i, (p, t) in enumerate((p, t) for p in pipelines for t in tests)]
    print("== redis ...", flush=True)
    rows = benchkit.run_workload([TABLE[n] for n in wanted], lambda s: phases, repeat=a.repeat,
                                 host=a.host, install=False)
    benchreport.add_ratios(rows, ["redis-server"])
    params = {"requests": a.requests, "requests_pipelined": pipelined, "clients": a.connections, "pipelines": pipelines, "tests": tests,
              "repeat": a.repeat}
    rep = Report("redis", params)
    rep.sections.append((f"redis-benchmark -n {a.requests} -c {a.connections} (one run per test and -P)",
                         rows, ["redis-server"]))
    rep.verdicts = benchreport.evaluate(rows, BENCH_TARGETS["redis"])
    rep.notes += [f"{n}: {TABLE[n].note}" for n in wanted]
    rep.notes.append("p50/p99 from redis-benchmark --csv; duration = requests / req/s; the -P 1 runs "
                     "of a slow server dominate the time (each test is one bounded subprocess).")
    return rep


WORKLOADS = [Workload("redis", "redis-benchmark against redis-server and examples/redis_kv.py", configure, run)]
