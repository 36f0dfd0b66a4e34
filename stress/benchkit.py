"""The machinery every saturated-regime workload shares: start, measure, alternate, compare.

Why: a figure means something only against a peer measured the same way in the
same run. A workload is a list of server ``Spec``s and a list of ``Phase``s (the
load: a C generator, ``wrk``, ``redis-benchmark``...). ``run_workload`` starts
each server in turn (never two at once; A B C A B C ... with ``repeat``), runs
every phase against it with the server tree's CPU (psutil, every descendant,
reaped ones included) sampled just before and after the phase, stops it (SIGTERM,
SIGKILL, orphans killed by PID) and takes the median of each figure.

A server that cannot run here (peer venv missing, an API not written yet, no
``redis-server``) is a *skipped* row with the reason, never a failure. Ratios
against peers and the recorded targets (``stress.thresholds.BENCH_TARGETS``)
are evaluated on the medians (``stress.benchreport``, which also prints the tables
and writes ``stress/results/bench-<workload>.json``).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from stress import peers
from stress._net import settle
from stress.benchreport import format_brief
from stress.proctree import Sampler, ServerError, ServerProcess, ServerSkipped, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Probe = Callable[[str, int], Optional[str]]          # None = ready; else what is wrong
Need = Callable[[], Optional[str]]                   # None = usable; else why not


@dataclass(frozen=True)
class Spec:
    """One server configuration. ``cmd`` placeholders: {python} {venv_python} {venv_bin}
    {root} {host} {port} {bind} (host:port, IPv6 in brackets). ``probe`` None: the server prints ``READY <port>`` (it gets port 0);
    else the benchmark picks a free port and waits until ``probe`` answers None."""
    name: str
    cmd: tuple[str, ...]
    probe: Optional[Probe] = None
    needs: tuple[Need, ...] = ()
    note: str = ""
    start_timeout: float = 30.0
    venv: bool = False          # runs from the peer virtualenv (installed on demand)


@dataclass(frozen=True)
class Phase:
    """One measured load: ``run(host, port)`` returns at least ``requests``; ``warmup`` runs
    first, unmeasured. ``label`` tells phases of one server apart (redis: ``get P16``).
    ``self_driven``: the server makes its own load (tasks); ``run(host, port, server)``
    waits for its ``RESULT`` line."""
    run: Callable[..., dict]
    label: str = ""
    warmup: Optional[Callable[[str, int], Any]] = None
    self_driven: bool = False


def module_spec(name: str, module: str, *args: str, venv: bool = False, needs: tuple[Need, ...] = (),
                note: str = "") -> Spec:
    """A ``stress.servers.<module>`` script (prints READY), with the system or the venv python."""
    py = "{venv_python}" if venv else "{python}"
    return Spec(name, (py, "-m", f"stress.servers.{module}", "--host", "{host}", "--port", "0", *args),
                needs=needs, note=note, venv=venv)


def api_missing(module: str, attribute: str) -> Need:
    """A need: ``module.attribute`` importable in this checkout (threadswoole APIs in progress)."""
    def need() -> Optional[str]:
        import importlib

        try:
            getattr(importlib.import_module(module), attribute)
        except Exception as exc:     # missing, or half-written on this branch: not measurable
            return f"{module}.{attribute} is not available yet ({type(exc).__name__}: {exc})"
        return None
    return need


def _expand(cmd: tuple[str, ...], host: str, port: int) -> list[str]:
    values = {"python": sys.executable, "venv_python": peers.python_path(),
              "venv_bin": os.path.dirname(peers.python_path()), "root": ROOT,
              "host": host, "port": str(port),
              "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}"}
    return [part.format(**values) for part in cmd]


def unavailable(spec: Spec, install: bool = True) -> Optional[str]:
    """Why ``spec`` cannot run here, or None. Creates the peer venv first when allowed."""
    if spec.venv and not peers.ready():
        if not install:
            return peers.missing_reason()
        try:
            peers.ensure()
        except Exception as exc:     # no registry, pip failure...: a skip, with the reason
            return f"peer virtualenv could not be created: {exc}"
    for need in spec.needs:
        why = need()
        if why:
            return why
    return None


def _base_row(spec: Spec, label: str) -> dict:
    return {"name": spec.name, "test": label, "ok": False, "skipped": None, "error": "", "note": spec.note}


def measure(spec: Spec, phases: list[Phase], host: str = "127.0.0.1") -> list[dict]:
    """Start ``spec``'s server, run every phase against it, stop it; one row per phase."""
    rows = [_base_row(spec, ph.label) for ph in phases]
    port = 0 if spec.probe is None else free_port(host)
    srv = ServerProcess("", [], host, cmd=_expand(spec.cmd, host, port))
    sampler: Optional[Sampler] = None
    try:
        if spec.probe is None:
            port = srv.start(spec.start_timeout)
        else:
            srv.start(spec.start_timeout, port=port, probe=spec.probe)
        if port:                       # 0: a self-driven server that listens nowhere useful
            settle((host, port))
        sampler = Sampler(srv.tree)
        sampler.start()
        for ph, row in zip(phases, rows):
            _run_phase(srv, ph, row, host, port)
    except ServerSkipped as exc:
        for row in rows:
            row["skipped"] = str(exc)
    except ServerError as exc:
        for row in rows:
            row["error"] = f"server failed to start: {exc}"
    finally:
        if sampler is not None:
            sampler.finish()
        stop = srv.stop()
        left = srv.tree.survivors() if srv.tree else []
        for row in rows:
            row["stop"] = stop
            if sampler is not None:
                row["peak_rss_mb"] = sampler.peak_rss / 2**20
            if left:
                row["ok"] = False
                row["error"] += f" processes left behind: {[p.pid for p in left]}"
    return rows


def _run_phase(srv: ServerProcess, ph: Phase, row: dict, host: str, port: int) -> None:
    try:
        if ph.warmup is not None:
            ph.warmup(host, port)
        (user0, sys0), t0 = srv.tree.cpu_split(), time.monotonic()
        res = ph.run(host, port, srv) if ph.self_driven else ph.run(host, port)
        (user1, sys1), wall = srv.tree.cpu_split(), time.monotonic() - t0
        user, system = user1 - user0, sys1 - sys0
        cpu = user + system
    except Exception as exc:          # the generator failed or timed out: an error row
        row["error"] = f"{type(exc).__name__}: {exc}"
        return
    row.update(res)
    requests = res.get("requests") or 0
    row["cpu_s"] = cpu
    row["user_s"], row["sys_s"] = user, system
    row["user_us_per_req"] = user * 1e6 / requests if requests else None
    row["sys_us_per_req"] = system * 1e6 / requests if requests else None
    row["cpu_util"] = cpu / wall if wall > 0 else None
    row["req_per_cpu_s"] = requests / cpu if cpu > 0 else None
    if srv.proc.poll() is not None:
        row["error"] = f"server died during the run (rc={srv.proc.returncode}): {srv.stderr_summary()}"
    elif requests == 0:
        row["error"] = f"no request completed {res.get('stderr', '')} {srv.stderr_summary()}".strip()
    else:
        row["ok"] = True


FIGURES = ("rps", "requests", "p50_us", "p99_us", "cpu_s", "cpu_util", "req_per_cpu_s", "peak_rss_mb",
           "user_s", "sys_s", "user_us_per_req", "sys_us_per_req")


def median_rows(runs: list[dict]) -> dict:
    good = [r for r in runs if r["ok"]]
    if not good:
        out = dict(runs[-1])
        out["runs"] = len(runs)
        return out
    out = dict(good[0])
    for f in FIGURES:
        vals = [r[f] for r in good if r.get(f) is not None]
        out[f] = statistics.median(vals) if vals else None
    out["errors"] = sum(r.get("errors") or 0 for r in good)
    out["runs"], out["runs_ok"] = len(runs), len(good)
    out["all_rps"] = [round(r["rps"]) for r in good if r.get("rps") is not None]
    return out


def run_workload(specs: list[Spec], phases: Callable[[Spec], list[Phase]], *, repeat: int = 3,
                 host: str = "127.0.0.1", install: bool = True, progress: bool = True) -> list[dict]:
    """Every spec in turn, ``repeat`` rounds (A B C A B C ...); medians per (server, phase)."""
    skip = {s.name: unavailable(s, install) for s in specs}
    runs: dict[tuple[str, str], list[dict]] = {}
    order: list[tuple[str, str]] = []
    for rnd in range(max(1, repeat)):
        for spec in specs:
            phs = phases(spec)
            if skip[spec.name]:
                if rnd == 0:
                    for ph in phs:
                        row = _base_row(spec, ph.label)
                        row["skipped"] = skip[spec.name]
                        runs[(spec.name, ph.label)] = [row]
                        order.append((spec.name, ph.label))
                continue
            for row in measure(spec, phs, host):
                key = (row["name"], row["test"])
                if key not in runs:
                    order.append(key)
                runs.setdefault(key, []).append(row)
                if progress:
                    print(f"  .. [{rnd + 1}/{repeat}] {format_brief(row)}", file=sys.stderr, flush=True)
            if any(r.get("skipped") for r in runs[(spec.name, phs[0].label)]):
                skip[spec.name] = runs[(spec.name, phs[0].label)][-1]["skipped"]
    return [median_rows(runs[k]) for k in order]


