"""Stress suite runner (what ``tox -e stress`` runs): scenarios -> one table -> JSON.

Runs the scenarios registered in ``stress.scenarios.SCENARIOS`` (or those
named by ``--only``), each under a hard time bound, and ends with one table
``scenario | mode | figure | value | pass/fail``. Results go to
``stress/results/latest.json`` (the previous file is moved to
``previous.json`` first) and, when a previous file exists, a plain-text
comparison per scenario+mode+figure (old -> new, % change) is printed.

After each scenario, any process it started that is still alive is killed (by PID) and
reported as a failed row. The table is followed by the time each scenario took; the JSON
also records those times, the load average at the start, the interpreter and the machine.

Exit status: 0 when every row passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
import traceback
from types import ModuleType
from typing import Any, Optional

import psutil

from stress.scenarios import SCENARIOS
from stress.scenarios.common import make_row

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class ScenarioTimeout(BaseException):  # not swallowed by "except Exception"
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise ScenarioTimeout()


def run_scenario(mod: ModuleType, quick: bool) -> list[dict]:
    """Run one scenario under SIGALRM-enforced MAX_SECONDS; failures become rows."""
    name = getattr(mod, "NAME", mod.__name__.rsplit(".", 1)[-1])
    limit = int(getattr(mod, "MAX_SECONDS", 600))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit)
    t0 = time.monotonic()
    try:
        rows = list(mod.run(quick=quick))
    except ScenarioTimeout:
        rows = [make_row(name, "-", "run", None, "", False, f"exceeded MAX_SECONDS={limit}")]
    except Exception as exc:
        fr = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(fr.filename)}:{fr.lineno}"
        rows = [make_row(name, "-", "run", None, "", False, f"{type(exc).__name__}: {exc} (at {where})")]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.monotonic() - t0
    rows += leftover_rows(name)
    for r in rows:
        r.setdefault("seconds", round(elapsed, 1))
    return rows


def leftover_rows(name: str) -> list[dict]:
    """No process a scenario started may outlive it: any descendant of this runner still
    alive is killed (by PID) and reported as a failed row."""
    me = psutil.Process()
    try:
        left = [p for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        left = []
    if not left:
        return []
    desc = []
    for p in left:
        try:
            desc.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=3)
    return [make_row(name, "-", "leftover processes", len(left), "proc", False,
                     "killed after the scenario: " + "; ".join(desc))]


def _num(v: float) -> str:
    if float(v).is_integer() or abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def _value(r: dict) -> str:
    v = r.get("value")
    return "-" if v is None else f"{_num(v)} {r['unit']}"


def print_table(rows: list[dict]) -> None:
    w = [max([len(h)] + [len(str(r[k])) for r in rows]) for h, k in
         (("scenario", "scenario"), ("mode", "mode"), ("figure", "figure"))]
    vw = max([5] + [len(_value(r)) for r in rows])
    head = f"{'scenario':<{w[0]}}  {'mode':<{w[1]}}  {'figure':<{w[2]}}  {'value':>{vw}}  result  detail"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:<{w[0]}}  {r['mode']:<{w[1]}}  {r['figure']:<{w[2]}}  "
              f"{_value(r):>{vw}}  {'PASS' if r['passed'] else 'FAIL':<6}  {r.get('detail', '')}")
    failed = sum(not r["passed"] for r in rows)
    print(f"stress: {len(rows) - failed} passed, {failed} failed")


def save(doc: dict, results_dir: str = RESULTS_DIR) -> Optional[dict]:
    """Write latest.json after moving the old one to previous.json; return the previous doc."""
    os.makedirs(results_dir, exist_ok=True)
    latest = os.path.join(results_dir, "latest.json")
    previous = os.path.join(results_dir, "previous.json")
    prev_doc = None
    if os.path.exists(latest):
        os.replace(latest, previous)
    if os.path.exists(previous):
        try:
            with open(previous) as f:
                prev_doc = json.load(f)
        except (OSError, ValueError):
            prev_doc = None
    tmp = latest + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    os.replace(tmp, latest)
    return prev_doc


def compare(prev: dict, cur: dict) -> list[str]:
    """Plain-text lines: per scenario+mode+figure, old -> new (% change)."""
    old = {(r["scenario"], r["mode"], r["figure"]): r for r in prev.get("rows", [])}
    lines = [f"compared with {prev.get('started', '?')} (quick={prev.get('quick')}) "
             f"-> {cur.get('started')} (quick={cur.get('quick')})"]
    for r in cur["rows"]:
        o = old.get((r["scenario"], r["mode"], r["figure"]))
        key = f"{r['scenario']} {r['mode']} {r['figure']}"
        if o is None:
            lines.append(f"  {key}: new")
            continue
        a, b = o.get("value"), r.get("value")
        if a is None or b is None:
            state = lambda x: "PASS" if x["passed"] else "FAIL"
            lines.append(f"  {key}: {_value(o)} ({state(o)}) -> {_value(r)} ({state(r)})")
            continue
        pct = f"{(b - a) / a * 100:+.1f}%" if a else "n/a"
        flip = ""
        if o["passed"] != r["passed"]:
            flip = "  (now PASS)" if r["passed"] else "  (now FAIL)"
        lines.append(f"  {key}: {_num(a)} -> {_num(b)} {r['unit']} ({pct}){flip}")
    return lines


def _loadavg() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short durations (smoke run)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--results-dir", default=RESULTS_DIR)
    ap.add_argument("--no-save", action="store_true", help="do not write/rotate the JSON files")
    a = ap.parse_args(argv)
    known = {getattr(m, "NAME", m.__name__): m for m in SCENARIOS}
    wanted = [n.strip() for n in a.only.split(",")] if a.only else list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows: list[dict] = []
    timing: dict[str, float] = {}
    load_start = _loadavg()
    t_all = time.monotonic()
    for name in wanted:
        print(f"== {name} (quick={a.quick}) ...", flush=True)
        t0 = time.monotonic()
        rows += run_scenario(known[name], a.quick)
        timing[name] = round(time.monotonic() - t0, 1)
    timing["total"] = round(time.monotonic() - t_all, 1)
    doc = {"started": started, "quick": a.quick, "only": wanted, "python": sys.version.split()[0],
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "load_at_start": load_start, "timing_s": timing, "rows": rows}
    print()
    print_table(rows)
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timing.items()))
    if not a.no_save:
        prev = save(doc, a.results_dir)
        print(f"results: {os.path.join(a.results_dir, 'latest.json')}")
        if prev:
            print()
            print("\n".join(compare(prev, doc)))
    return 0 if rows and all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
