"""Ratios, targets, tables and result files of the benchmark workloads.

``evaluate`` turns the recorded targets (``stress.thresholds.BENCH_TARGETS``) into
PASS / FAIL / SKIP verdicts on the medians; ``add_ratios`` adds each row's ratios to the
named peers' same phase; ``Report`` is what a workload hands back to the CLI (its
sections print as tables); ``save`` writes ``stress/results/bench-<workload>.json``.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
COARSE_CPU_S = 0.5      # below this, 10 ms CPU-tick resolution makes req/cpu-s coarse


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


def _why_none(row: Optional[dict]) -> str:
    if row is None:
        return "not in this run"
    return row.get("skipped") or row.get("error", "").strip() or "no figure"


def evaluate(rows: list[dict], targets: list[tuple]) -> list[Verdict]:
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
                why = "; ".join(f"{n}: {_why_none(r)}" for n, r in ((server, a), (peer, b)) if n in missing)
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
def fmt(v: Any, spec: str = ".0f") -> str:
    """A figure for a table cell; ``-`` when there is none."""
    return "-" if v is None else format(v, spec)


def format_brief(r: dict) -> str:
    head = f"{r['name']}{' ' + r['test'] if r['test'] else ''}"
    if r.get("skipped"):
        return f"{head}: skipped ({r['skipped']})"
    if not r["ok"]:
        return f"{head}: FAILED {r['error'].strip()}"
    return f"{head}: {fmt(r.get('rps'))} req/s, {fmt(r.get('req_per_cpu_s'))} req/cpu-s"


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
        per_cpu = fmt(r.get("req_per_cpu_s"))
        if r.get("cpu_s") is not None and r["cpu_s"] < COARSE_CPU_S:
            per_cpu += "~"
            coarse = True
        line += (f"{fmt(r.get('rps')):>9}  {fmt(ms(r.get('p50_us')), '.2f'):>7}  "
                 f"{fmt(ms(r.get('p99_us')), '.2f'):>7}  {per_cpu:>10}  "
                 f"{fmt(r.get('cpu_util'), '.0%'):>5}  {fmt(r.get('peak_rss_mb'), '.1f'):>6}")
        for p in peers_:
            rps, cpu = r.get("vs", {}).get(p, (None, None))
            cell = "-" if rps is None and cpu is None else f"{fmt(rps, '.2f')}/{fmt(cpu, '.2f')}"
            line += f"  {cell:>{max(13, len(p) + 13)}}"
        if r.get("errors"):
            line += f"  ERR={r['errors']}"
        lines.append(line)
    if coarse:
        lines.append(f"~ the server used under {COARSE_CPU_S} CPU-s in that run: CPU times have 10 ms "
                     "resolution (clock ticks), so that req/cpu-s is coarse; use more requests.")
    return lines


def cpu_split_lines(rows: list[dict]) -> list[str]:
    """User and system CPU microseconds per request of each server's whole tree (medians of the
    runs): the system side is the kernel's work for the same syscalls, so it bounds how far a
    cut in user-space work can move req/cpu-s."""
    out = [f"{'server':<24} {'user us/req':>11} {'sys us/req':>10} {'user share':>10}"]
    for r in rows:
        u, s = r.get("user_us_per_req"), r.get("sys_us_per_req")
        if not r.get("ok") or u is None or s is None:
            continue
        share = u / (u + s) if u + s else None
        out.append(f"{r['name'] + (' ' + r['test'] if r['test'] else ''):<24} {u:>11.2f} {s:>10.2f} {fmt(share, '.0%'):>10}")
    return out if len(out) > 1 else []


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
    failures: list[str] = field(default_factory=list)   # failed runs outside the sections (fan-out)

    def lines(self) -> list[str]:
        out = []
        for title, rows, peers_ in self.sections:
            out += ["", title] + table(rows, peers_)
        if self.verdicts:
            out += [""] + verdict_lines(self.verdicts)
        return out + [""] + self.notes

    def failed(self) -> bool:
        return bool(self.failures) or any(not r["ok"] and not r.get("skipped") for _t, rows, _p in self.sections for r in rows)
