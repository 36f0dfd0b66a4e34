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
are evaluated on the medians; ``save`` writes ``stress/results/bench-<workload>.json``.
"""
from __future__ import annotations

import fnmatch
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from stress import peers
from stress._net import settle
from stress.proctree import Sampler, ServerError, ServerProcess, ServerSkipped, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "stress", "results")
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
        except (ImportError, AttributeError) as exc:
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
        cpu0, t0 = srv.tree.cpu(), time.monotonic()
        res = ph.run(host, port, srv) if ph.self_driven else ph.run(host, port)
        cpu, wall = srv.tree.cpu() - cpu0, time.monotonic() - t0
    except Exception as exc:          # the generator failed or timed out: an error row
        row["error"] = f"{type(exc).__name__}: {exc}"
        return
    row.update(res)
    requests = res.get("requests") or 0
    row["cpu_s"] = cpu
    row["cpu_util"] = cpu / wall if wall > 0 else None
    row["req_per_cpu_s"] = requests / cpu if cpu > 0 else None
    if srv.proc.poll() is not None:
        row["error"] = f"server died during the run (rc={srv.proc.returncode}): {srv.stderr_summary()}"
    elif requests == 0:
        row["error"] = f"no request completed {res.get('stderr', '')} {srv.stderr_summary()}".strip()
    else:
        row["ok"] = True


COARSE_CPU_S = 0.5      # below this, 10 ms CPU-tick resolution makes req/cpu-s coarse
FIGURES = ("rps", "requests", "p50_us", "p99_us", "cpu_s", "cpu_util", "req_per_cpu_s", "peak_rss_mb")


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


# ---- ratios and targets ------------------------------------------------------------------
@dataclass
class Verdict:
    server: str
    peer: str
    figure: str
    min_ratio: float
    test: str
    ratio: Optional[float] = None
    status: str = "SKIP"          # PASS / FAIL / SKIP (a side did not run)
    detail: str = ""
    pattern: str = ""             # the target's test pattern (``test`` is one label it matched)


def _figure(row: Optional[dict], figure: str) -> Optional[float]:
    return row.get(figure) if row and row.get("ok") else None


def evaluate(rows: list[dict], targets: list[tuple], ) -> list[Verdict]:
    """``targets``: (server, peer, figure, min_ratio, test-pattern) tuples; one verdict per
    matching test label (fnmatch pattern; "" matches the unlabelled phase)."""
    by = {(r["name"], r["test"]): r for r in rows}
    out = []
    for server, peer, figure, min_ratio, pattern in targets:
        tests = sorted({t for (n, t) in by if n == server and fnmatch.fnmatchcase(t, pattern)}) or [pattern]
        for test in tests:
            v = Verdict(server, peer, figure, min_ratio, test, pattern=pattern)
            a, b = by.get((server, test)), by.get((peer, test))
            fa, fb = _figure(a, figure), _figure(b, figure)
            if fa is None or fb is None:
                missing = [n for n, r, f in ((server, a, fa), (peer, b, fb)) if f is None]
                why = "; ".join(f"{n}: {(r or {}).get('skipped') or (r or {}).get('error') or 'no figure'}"
                                for n, r in ((server, a), (peer, b)) if n in missing)
                v.detail = why.strip()
            elif fb:
                v.ratio = fa / fb
                v.status = "PASS" if v.ratio >= min_ratio else "FAIL"
            out.append(v)
    return out


def add_ratios(rows: list[dict], peers_: list[str]) -> None:
    """``row['vs'][peer] = (rps ratio, req/cpu-s ratio)`` against each peer's same phase."""
    by = {(r["name"], r["test"]): r for r in rows}
    for r in rows:
        r["vs"] = {}
        for p in peers_:
            ref = by.get((p, r["test"]))
            if not (r.get("ok") and ref and ref.get("ok")):
                continue
            rps = r["rps"] / ref["rps"] if r.get("rps") and ref.get("rps") else None
            cpu = (r["req_per_cpu_s"] / ref["req_per_cpu_s"]
                   if r.get("req_per_cpu_s") and ref.get("req_per_cpu_s") else None)
            r["vs"][p] = (rps, cpu)


# ---- printing and saving ------------------------------------------------------------------
def _f(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def format_brief(r: dict) -> str:
    head = f"{r['name']}{' ' + r['test'] if r['test'] else ''}"
    if r.get("skipped"):
        return f"{head}: skipped ({r['skipped']})"
    if not r["ok"]:
        return f"{head}: FAILED {r['error'].strip()}"
    return f"{head}: {_f(r.get('rps'))} req/s, {_f(r.get('req_per_cpu_s'))} req/cpu-s"


def _collapse_skipped(rows: list[dict]) -> list[dict]:
    """One line for a server whose every phase was skipped for one reason (test ``*``)."""
    out, seen = [], set()
    for r in rows:
        same = [x for x in rows if x["name"] == r["name"]]
        if len(same) > 1 and all(x.get("skipped") == r.get("skipped") for x in same) and r.get("skipped"):
            if r["name"] not in seen:
                seen.add(r["name"])
                out.append(dict(r, test="*"))
            continue
        out.append(r)
    return out


def table(rows: list[dict], peers_: list[str]) -> list[str]:
    rows = _collapse_skipped(rows)
    labelled = any(r["test"] for r in rows)
    nw = max([6] + [len(r["name"]) for r in rows])
    tw = max([4] + [len(r["test"]) for r in rows]) if labelled else 0
    head = f"{'server':<{nw}}  " + (f"{'test':<{tw}}  " if labelled else "")
    head += f"{'req/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  {'req/cpu-s':>10}  {'cpu':>5}  {'rss MB':>6}"
    for p in peers_:
        head += f"  {'x ' + p + ' (rps/cpu)':>{max(13, len(p) + 13)}}"
    lines = [head, "-" * len(head)]
    coarse = False
    for r in rows:
        line = f"{r['name']:<{nw}}  " + (f"{r['test']:<{tw}}  " if labelled else "")
        if r.get("skipped"):
            lines.append(line + f"skipped: {r['skipped']}")
            continue
        if not r["ok"]:
            lines.append(line + f"FAILED: {r['error'].strip()[:300]}")
            continue
        ms = lambda us: None if us is None else us / 1000   # noqa: E731
        per_cpu = _f(r.get("req_per_cpu_s"))
        if r.get("cpu_s") is not None and r["cpu_s"] < COARSE_CPU_S:
            per_cpu += "~"
            coarse = True
        line += (f"{_f(r.get('rps')):>9}  {_f(ms(r.get('p50_us')), '.2f'):>7}  "
                 f"{_f(ms(r.get('p99_us')), '.2f'):>7}  {per_cpu:>10}  "
                 f"{_f(r.get('cpu_util'), '.0%'):>5}  {_f(r.get('peak_rss_mb'), '.1f'):>6}")
        for p in peers_:
            rps, cpu = r.get("vs", {}).get(p, (None, None))
            cell = "-" if rps is None and cpu is None else f"{_f(rps, '.2f')}/{_f(cpu, '.2f')}"
            line += f"  {cell:>{max(13, len(p) + 13)}}"
        if r.get("errors"):
            line += f"  ERR={r['errors']}"
        lines.append(line)
    if coarse:
        lines.append(f"~ the server used under {COARSE_CPU_S} CPU-s in that run: CPU times have 10 ms "
                     "resolution (clock ticks), so that req/cpu-s is coarse; use more requests.")
    return lines


def verdict_lines(verdicts: list[Verdict]) -> list[str]:
    out = []
    said: set = set()
    for v in verdicts:
        if v.status == "SKIP":           # one line per target whose side did not run
            key = (v.server, v.peer, v.figure, v.min_ratio, v.pattern, v.detail)
            if key in said:
                continue
            said.add(key)
            v = Verdict(v.server, v.peer, v.figure, v.min_ratio, v.pattern, None, "SKIP", v.detail)
        fig = {"req_per_cpu_s": "req/cpu-s", "rps": "req/s"}.get(v.figure, v.figure)
        test = f" [{v.test}]" if v.test else ""
        got = f"x{v.ratio:.2f}" if v.ratio is not None else "-"
        out.append(f"target {v.server}{test} {fig} >= x{v.min_ratio:g} {v.peer}: {got} {v.status}"
                   + (f" ({v.detail})" if v.detail else ""))
    return out


def save(workload: str, doc: dict, text: list[str], results_dir: str = RESULTS_DIR) -> str:
    """Write bench-<workload>.json and .txt (the previous JSON kept as .previous.json)."""
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"bench-{workload}.json")
    if os.path.exists(path):
        os.replace(path, os.path.join(results_dir, f"bench-{workload}.previous.json"))
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1, default=str)
    os.replace(path + ".tmp", path)
    with open(os.path.join(results_dir, f"bench-{workload}.txt"), "w") as f:
        f.write("\n".join(text) + "\n")
    return path


@dataclass
class Report:
    """What a workload hands back to the CLI: sections of rows, verdicts and notes."""
    workload: str
    params: dict
    sections: list[tuple[str, list[dict], list[str]]] = field(default_factory=list)  # title, rows, peers
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for title, rows, peers_ in self.sections:
            out += ["", title] + table(rows, peers_)
        if self.verdicts:
            out += [""] + verdict_lines(self.verdicts)
        return out + [""] + self.notes

    def failed(self) -> bool:
        return any(not r["ok"] and not r.get("skipped") for _t, rows, _p in self.sections for r in rows)
