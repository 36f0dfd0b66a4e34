"""``bench serve-blocking`` / ``serve-cpu``: `threadswoole serve` where threads matter.

- ``serve-blocking``: every request sleeps 2 ms (``stress.servers.apps:wsgi_sleep``, like a
  handler waiting on a database): ``threadswoole serve --mode thread --workers 32`` against
  granian WSGI with 32 blocking threads and gunicorn gthread with 32 threads (one process
  each); the figure is requests/s (the ceiling is 32 / 2 ms = 16,000). The ``-ft`` rows are the
  same pair on free-threaded CPython 3.13t with the GIL off (``PYTHON_GIL=0``): ours from this
  checkout, granian from a benchmark-only venv made from that interpreter
  (``stress.peers.venv_dir(python)``: ``bench-venv-py3.13t``, pins ``stress.peers.FT_PINS``);
  skipped without a 3.13t. The GIL pair and its target are unchanged; the ft pair has its own.
- ``serve-cpu``: every request computes for about 1-2 ms in pure Python
  (``stress.servers.apps:wsgi_cpu``), served by ``threadswoole serve --mode thread`` on
  free-threaded CPython 3.13t (``PYTHON_GIL=0``) with 1 and with 2 worker threads; the figure
  is requests/s, w2 against w1. The same run also measures how much two plain Python threads
  scale on this machine right now (``machine ceiling``): on a shared two-core box that
  ceiling, not the server, bounds the ratio. Skipped without a 3.13t interpreter
  (``../shared/tools/free-threaded-python`` or ``.ci/build-free-threaded-python`` builds one;
  ``THREADSWOOLE_PY313T`` names another).
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
from typing import Optional

from stress import benchkit, benchreport, peers
from stress.benchkit import Spec
from stress.benchreport import Report
from stress.drivers import http_probe, wrk_missing, wrk_phase
from stress.thresholds import BENCH_TARGETS
from stress.workloads import Workload, apply_quick, common_options, names
from stress.workloads.http import _SLEEP, _serve_cli_missing, granian, gunicorn

_CPU = "stress.servers.apps:wsgi_cpu"


def free_threaded_python() -> Optional[str]:
    candidates = [os.environ.get("THREADSWOOLE_PY313T", ""), os.path.expanduser("~/.local/pyft/bin/python3.13t"),
                  shutil.which("python3.13t") or ""]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def _ft_missing() -> Optional[str]:
    return None if free_threaded_python() else "no free-threaded python3.13t (../shared/tools/free-threaded-python or .ci/build-free-threaded-python builds one)"


def ts_serve_thread(name: str, app: str, workers: int, python: str = "{python}", env: tuple[str, ...] = (),
                    needs: tuple = (), note: str = "") -> Spec:
    return Spec(name, (*env, python, "-m", "threadswoole", "serve", app, "--interface", "wsgi", "--mode", "thread",
                       "--workers", str(workers), "--bind", "{bind}", "--log-level", "warning"),
                probe=http_probe(), needs=(wrk_missing, _serve_cli_missing, *needs), note=note)


BLOCKING = {s.name: s for s in [
    ts_serve_thread("threadswoole-thread-32", _SLEEP, 32,
                    note="threadswoole serve --mode thread --workers 32, 2 ms sleep per request"),
    granian("granian-wsgi-32", "wsgi", _SLEEP, "--blocking-threads", "32",
            note="granian WSGI, 1 worker, 32 blocking threads, 2 ms sleep"),
    gunicorn("gunicorn-gthread-32", 32, _SLEEP, note="gunicorn gthread, 1 worker x 32 threads, 2 ms sleep"),
]}
_BLOCKING_FT = ("threadswoole-thread-32-ft", "granian-wsgi-32-ft")   # the free-threaded pair


def _ft_peers_missing() -> Optional[str]:
    """Why granian cannot run on the free-threaded interpreter here, or None."""
    python = free_threaded_python()
    if python is None:
        return _ft_missing()
    try:
        return peers.missing_reason(python)
    except (OSError, subprocess.SubprocessError) as exc:   # it would not say what it is
        return f"{python} did not run: {exc}"


def _ensure_ft_peers() -> None:
    """Create the free-threaded interpreter's peer venv (granian) when missing; a failure only
    prints: the row is then skipped with ``_ft_peers_missing``'s reason."""
    python = free_threaded_python()
    if python is None or _ft_peers_missing() is None:
        return
    try:
        peers.ensure(python=python)
    except Exception as exc:     # no registry, no wheel for this build...: a skipped row
        print(f"peer virtualenv for {python} could not be created: {exc}", flush=True)


@functools.lru_cache(maxsize=None)
def _blocking_table() -> dict[str, Spec]:
    """BLOCKING plus the free-threaded pair (built when run: it asks the 3.13t for its ABI)."""
    python = free_threaded_python()
    env = ("env", "PYTHON_GIL=0")
    try:
        launcher = (*env, peers.bin_path("granian", python) if python else "granian")
    except (OSError, subprocess.SubprocessError):   # a broken 3.13t: the need says so, the row is skipped
        launcher = (*env, "granian")
    ft = [
        ts_serve_thread("threadswoole-thread-32-ft", _SLEEP, 32, python or "python3.13t", env, (_ft_missing,),
                        note="threadswoole serve --mode thread --workers 32 on python3.13t (GIL off), 2 ms sleep"),
        granian("granian-wsgi-32-ft", "wsgi", _SLEEP, "--blocking-threads", "32", launcher=launcher, venv=False,
                needs=(_ft_peers_missing,),
                note=f"granian {peers.FT_PINS['granian']} WSGI on python3.13t (GIL off), 1 worker, "
                     "32 blocking threads, 2 ms sleep"),
    ]
    return {**BLOCKING, **{s.name: s for s in ft}}


@functools.lru_cache(maxsize=None)
def _cpu_table() -> dict[str, Spec]:
    python = free_threaded_python() or "python3.13t"
    env = ("env", "PYTHON_GIL=0")
    return {s.name: s for s in [
        ts_serve_thread("threadswoole-thread-w1", _CPU, 1, python, env, (_ft_missing,),
                        note="threadswoole serve --mode thread --workers 1 on python3.13t (GIL off), CPU-bound handler"),
        ts_serve_thread("threadswoole-thread-w2", _CPU, 2, python, env, (_ft_missing,),
                        note="threadswoole serve --mode thread --workers 2 on python3.13t (GIL off), CPU-bound handler"),
    ]}


_CEILING = """
import threading, time
def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
def run(k, n=2_000_000):
    threads = [threading.Thread(target=work, args=(n,)) for _ in range(k)]
    start = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    return time.perf_counter() - start
one = min(run(1) for _ in range(3)); two = min(run(2) for _ in range(3))
print("%.2f" % (2 * one / two))
"""


def machine_ceiling() -> str:
    """How much two threads of pure Python scale on this machine now (free-threaded build)."""
    python = free_threaded_python()
    if python is None:
        return "-"
    result = subprocess.run(["env", "PYTHON_GIL=0", python, "-c", _CEILING], capture_output=True, text=True, timeout=120)
    return result.stdout.strip() or "?"


def _make(name: str, table_of, peers_: list[str], title: str, connections: int, server_names: tuple[str, ...] = ()):
    """``server_names``: the default --servers when building ``table_of()`` at parse time would
    cost (serve-blocking's asks the 3.13t for its ABI); else the table's names."""
    def configure(ap: argparse.ArgumentParser) -> None:
        common_options(ap, duration=5.0, repeat=3, servers=",".join(server_names or table_of()),
                       connections=connections)

    def run(a: argparse.Namespace) -> Report:
        table = table_of()
        apply_quick(a)
        wanted = names(a.servers, table)
        if a.list:
            for n, s in table.items():
                print(f"{n:<26} {s.note}")
            return None  # type: ignore[return-value]
        params = {k: getattr(a, k) for k in ("duration", "warmup", "repeat", "connections", "gen_threads")}
        phase = wrk_phase(connections=a.connections, duration=a.duration, warmup=a.warmup, threads=a.gen_threads)
        print(f"== {name} ...", flush=True)
        ceiling = machine_ceiling() if name == "serve-cpu" else ""
        if "granian-wsgi-32-ft" in wanted and not a.no_install:
            _ensure_ft_peers()
        rows = benchkit.run_workload([table[n] for n in wanted], lambda spec: [phase], repeat=a.repeat,
                                     host=a.host, install=not a.no_install)
        shown = [p for p in peers_ if p in wanted]
        benchreport.add_ratios(rows, shown)
        rep = Report(name, params)
        rep.sections.append((f"{title}: wrk, {a.connections} keep-alive connections, {round(a.duration)} s", rows, shown))
        rep.verdicts = benchreport.evaluate(rows, BENCH_TARGETS[name])
        rep.notes += [f"{n}: {table[n].note}" for n in wanted]
        if ceiling:
            rep.notes.append(f"machine ceiling: two plain Python threads on python3.13t did {ceiling}x the work of one "
                             "in the same time, measured just before the servers (what this machine allows now)")
        rep.notes.append("the figure here is requests/s (rps); req/cpu-s is shown for information.")
        return rep

    return Workload(name, title, configure, run)


WORKLOADS = [
    _make("serve-blocking", _blocking_table, ["granian-wsgi-32", "granian-wsgi-32-ft", "gunicorn-gthread-32"],
          "WSGI with a 2 ms blocking handler, 32 threads each (-ft: python3.13t, GIL off)", 100,
          (*BLOCKING, *_BLOCKING_FT)),
    _make("serve-cpu", _cpu_table, ["threadswoole-thread-w1"],
          "WSGI CPU-bound handler on free-threaded 3.13t, 1 vs 2 worker threads", 16),
]
