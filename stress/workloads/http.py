"""``bench http`` / ``http-blocking`` / ``wsgi`` / ``asgi``: HTTP/1.1 under ``wrk``.

All four drive ``wrk --latency`` with 100 keep-alive connections (one wrk thread by
default, so the other core is the server's) at ``GET /`` -> ``200 Hello, World!``
(each server's answer is checked once before it is measured).

- ``http``: threadswoole's native ``http.Server`` (BASE w1 / w2, PROCESS, THREAD) against
  uvicorn (+uvloop +httptools, ASGI), granian (ASGI and WSGI), gunicorn gthread (WSGI, one
  worker like BASE w1) and a minimal HTTP/1.1 server on stdlib asyncio.
- ``http-blocking``: every request blocks 2 ms (``time.sleep``, like a database call):
  threadswoole THREAD with 32 worker threads vs gunicorn gthread with 32 threads vs granian
  WSGI with 32 blocking threads; requests/s is the figure (ceiling 32 / 2 ms = 16,000).
- ``wsgi`` / ``asgi``: the same hello app (``stress/servers/apps.py``) served by
  ``threadswoole serve MODULE:ATTR --interface wsgi|asgi`` in each mode, beside gunicorn
  gthread and granian WSGI, or uvicorn and granian ASGI.

threadswoole servers that do not exist yet (``threadswoole.http``, the ``serve`` CLI) are
skipped rows with the reason.
"""
from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from typing import Optional

from stress import benchkit, benchreport
from stress.benchkit import ROOT, Spec
from stress.benchreport import Report
from stress.drivers import http_probe, wrk_missing, wrk_phase
from stress.thresholds import BENCH_TARGETS
from stress.workloads import Workload, apply_quick, common_options, names

_HELLO = "stress.servers.apps:wsgi_hello"
_AHELLO = "stress.servers.apps:asgi_hello"
_SLEEP = "stress.servers.apps:wsgi_sleep"


_ts_http_missing = benchkit.api_missing("threadswoole.http", "Server")


@functools.lru_cache(maxsize=None)
def _serve_cli_missing() -> Optional[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "threadswoole", "serve", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"`threadswoole serve` is not written yet (--help exited {proc.returncode})"
    return None


def ts_http(name: str, mode: str, workers: int, *extra: str, note: str = "") -> Spec:
    return benchkit.module_spec(name, "threadswoole_http", "--mode", mode, "--workers", str(workers),
                                *extra, needs=(wrk_missing, _ts_http_missing), note=note)


def uvicorn(name: str = "uvicorn", app: str = _AHELLO) -> Spec:
    return Spec(name, ("{venv_python}", "-m", "uvicorn", app, "--host", "{host}", "--port", "{port}",
                       "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                       "--log-level", "warning", "--lifespan", "off"),
                probe=http_probe(), needs=(wrk_missing,), venv=True,
                note="uvicorn + uvloop + httptools, 1 process, ASGI hello")


def granian(name: str, interface: str, app: str, *extra: str, note: str = "",
            launcher: tuple[str, ...] = ("{venv_bin}/granian",), venv: bool = True,
            needs: tuple = ()) -> Spec:
    """granian, one worker. ``launcher``: the command that starts it (default: the peer venv's
    ``granian``; ``venv=False`` with another venv's, e.g. a free-threaded one, and ``needs``
    saying when that one is missing)."""
    return Spec(name, (*launcher, "--interface", interface, "--host", "{host}", "--port",
                       "{port}", "--workers", "1", "--http", "1", "--no-ws", "--log-level", "warning",
                       "--no-access-log", *extra, app),
                probe=http_probe(), needs=(wrk_missing, *needs), venv=venv,
                note=note or f"granian, 1 worker, {interface.upper()} hello")


def gunicorn(name: str, threads: int, app: str, note: str = "") -> Spec:
    return Spec(name, ("{venv_bin}/gunicorn", "-k", "gthread", "--workers", "1", "--threads", str(threads),
                       "-b", "{bind}", "--backlog", "1024", "--log-level", "warning", app),
                probe=http_probe(), needs=(wrk_missing,), venv=True,
                note=note or f"gunicorn gthread, 1 worker x {threads} threads, WSGI hello")


def ts_serve(name: str, interface: str, mode: str, workers: int, app: str) -> Spec:
    return Spec(name, ("{python}", "-m", "threadswoole", "serve", app, "--interface", interface, "--mode",
                       mode, "--workers", str(workers), "--bind", "{bind}"),
                probe=http_probe(), needs=(wrk_missing, _serve_cli_missing),
                note=f"threadswoole serve --interface {interface} --mode {mode} --workers {workers}")


HTTP = {s.name: s for s in [
    ts_http("threadswoole-base", "base", 1, note="threadswoole http.Server BASE, worker_num=1"),
    ts_http("threadswoole-base-w2", "base", 2, note="threadswoole http.Server BASE, worker_num=2"),
    ts_http("threadswoole-process", "process", 2, "--reactors", "1",
            note="threadswoole http.Server PROCESS, worker_num=2, reactor_num=1"),
    ts_http("threadswoole-thread", "thread", 2, "--reactors", "1",
            note="threadswoole http.Server THREAD, worker_num=2, reactor_num=1"),
    uvicorn(),
    granian("granian-asgi", "asgi", _AHELLO),
    granian("granian-wsgi", "wsgi", _HELLO),
    gunicorn("gunicorn-gthread", 4, _HELLO),
    benchkit.module_spec("asyncio-http", "asyncio_http", needs=(wrk_missing,),
                         note="minimal HTTP/1.1 server on stdlib asyncio (stress/servers/asyncio_http.py)"),
]}
BLOCKING = {s.name: s for s in [
    ts_http("threadswoole-thread-32", "thread", 32, "--handler", "sleep", "--sleep-ms", "2",
            note="threadswoole http.Server THREAD, 32 worker threads, 2 ms sleep per request"),
    gunicorn("gunicorn-gthread-32", 32, _SLEEP, note="gunicorn gthread, 1 worker x 32 threads, 2 ms sleep"),
    granian("granian-wsgi-32", "wsgi", _SLEEP, "--blocking-threads", "32",
            note="granian WSGI, 1 worker, 32 blocking threads, 2 ms sleep"),
]}
WSGI = {s.name: s for s in [
    ts_serve("threadswoole-base", "wsgi", "base", 1, _HELLO),
    ts_serve("threadswoole-process", "wsgi", "process", 2, _HELLO),
    ts_serve("threadswoole-thread", "wsgi", "thread", 2, _HELLO),
    gunicorn("gunicorn-gthread", 4, _HELLO),
    granian("granian-wsgi", "wsgi", _HELLO),
]}
ASGI = {s.name: s for s in [
    ts_serve("threadswoole-base", "asgi", "base", 1, _AHELLO),
    ts_serve("threadswoole-process", "asgi", "process", 2, _AHELLO),
    ts_serve("threadswoole-thread", "asgi", "thread", 2, _AHELLO),
    uvicorn(),
    granian("granian-asgi", "asgi", _AHELLO),
]}


def _make(name: str, table: dict[str, Spec], peers_: list[str], title: str, targets: str = ""):
    def configure(ap: argparse.ArgumentParser) -> None:
        common_options(ap, duration=5.0, repeat=3, servers=",".join(table))

    def run(a: argparse.Namespace) -> Report:
        apply_quick(a)
        wanted = names(a.servers, table)
        if a.list:
            for n, s in table.items():
                print(f"{n:<26} {s.note}")
            return None  # type: ignore[return-value]
        params = {k: getattr(a, k) for k in ("duration", "warmup", "repeat", "connections", "gen_threads")}
        phase = wrk_phase(connections=a.connections, duration=a.duration, warmup=a.warmup,
                          threads=a.gen_threads)
        print(f"== {name} ...", flush=True)
        rows = benchkit.run_workload([table[n] for n in wanted], lambda spec: [phase], repeat=a.repeat,
                                     host=a.host, install=not a.no_install)
        shown = [p for p in peers_ if p in wanted]
        benchreport.add_ratios(rows, shown)
        rep = Report(name, params)
        rep.sections.append((f"{title}: wrk, {a.connections} keep-alive connections, "
                             f"{a.gen_threads} wrk thread(s), {round(a.duration)} s", rows, shown))
        if targets:
            rep.verdicts = benchreport.evaluate(rows, BENCH_TARGETS[targets])
        rep.notes += [f"{n}: {table[n].note}" for n in wanted]
        rep.notes.append("p50/p99: wrk --latency; req/cpu-s: requests / CPU seconds of the server's "
                         "whole process tree (psutil) during the wrk run.")
        return rep

    return Workload(name, title, configure, run)


WORKLOADS = [
    _make("http", HTTP, ["uvicorn", "granian-asgi", "threadswoole-base"],
          "HTTP hello world (threadswoole http.Server vs peers)", "http"),
    _make("http-blocking", BLOCKING, ["gunicorn-gthread-32"],
          "HTTP with a 2 ms blocking handler, 32 threads each"),
    _make("wsgi", WSGI, ["gunicorn-gthread", "granian-wsgi"], "WSGI hello world (threadswoole serve)", "wsgi"),
    _make("asgi", ASGI, ["uvicorn", "granian-asgi"], "ASGI hello world (threadswoole serve)", "asgi"),
]
