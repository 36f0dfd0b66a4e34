"""Soak: 60 s of mixed traffic per mode, every answer verified, checked every 5 s.

Proves, per mode, that under sustained mixed load nothing is lost, corrupted, reordered
or left unanswered: 20 connections (16 request/response, 4 pipelined with 8 requests in
flight) send length-framed messages of 16 B, 512 B, 4 KiB and 64 KiB (weights 40/30/20/10);
each message carries its connection id, a sequence number and the CRC32 of its payload,
and every echo must come back whole, in order, with the same tag and a payload whose
CRC32 matches (``stress.checked.run_checked``). A request unanswered after 5 s fails.

Every 5 s each load process reports that interval's counts (verified answers, failed,
mismatches, lost connections) and the server tree's RSS is sampled; the row carries the
per-interval counts (printed live, and kept in the JSON). Fails on any mismatch, failed
request or lost connection, on an interval with no verified answer (a stall), or when
the server's anonymous RSS grows by more than the threshold between the first and the
last interval (a leak under traffic). ``--quick``: 8 s, intervals of 2 s.
"""
from __future__ import annotations

from typing import Any

from stress.checked import run_checked
from stress.proctree import Sampler
from stress.scenarios.common import MODES, Server, guarded, make_row, mib, say, snapshot
from stress.thresholds import threshold

NAME = "soak"
MAX_SECONDS = 280
FULL = dict(duration=60.0, interval=5.0, connections=20, pipelined=4, depth=8)
QUICK = dict(duration=8.0, interval=2.0, connections=20, pipelined=4, depth=8)


def run_mode(mode: str, p: dict) -> list[dict[str, Any]]:
    th = threshold(NAME, mode)
    rss_at: list[tuple[float, float]] = []      # (rss, anon) per interval, MiB
    s = Server(mode)
    with s as srv:
        sampler = Sampler(srv.tree)
        sampler.start()
        start = snapshot(srv)

        def on_interval(i: int, c: dict) -> None:
            snap = snapshot(srv)
            rss_at.append((mib(snap["rss"]), mib(snap["anon"])))
            say(f"{mode} {(i + 1) * p['interval']:>4.0f}s: verified {c['ok']:>7}, failed {c['failed']}, "
                f"mismatches {c['mismatches']}, lost {c['lost']}, {c['bytes'] / 2**20:.0f} MiB echoed, "
                f"server rss {mib(snap['rss']):.1f} MiB")

        res = run_checked(("127.0.0.1", srv.port), connections=p["connections"],
                          pipelined=p["pipelined"], depth=p["depth"], duration=p["duration"],
                          interval=p["interval"], timeout=5.0, processes=2,
                          on_interval=on_interval)
        sampler.finish()
        alive = srv.proc.poll() is None
    problems = s.problems
    full = int(p["duration"] // p["interval"])
    ivls = res.intervals[:full]
    stalls = [i for i, c in enumerate(ivls) if c["ok"] == 0]
    why = []
    if res.mismatches or res.failed or res.lost:
        why.append(f"{res.mismatches} mismatches, {res.failed} failed ({res.timeouts} timed out), "
                   f"{res.lost} lost connections")
    if len(ivls) < full:
        why.append(f"only {len(ivls)} of {full} intervals reported")
    if stalls:
        why.append(f"no verified answer in interval(s) {stalls}")
    if res.worker_errors:
        why.append(f"load errors: {res.worker_errors}")
    if not alive:
        why.append("server died")
    why += problems
    oks = [c["ok"] for c in ivls]
    counts = " ".join(str(n) for n in oks)
    rows = [make_row(NAME, mode, "verified req/s", res.ok / p["duration"], "req/s", not why,
                     (f"{res.ok} answers byte-exact in {len(ivls)} x {p['interval']:.0f}s intervals "
                      f"(verified per interval: {counts}); 0 failed, 0 lost; p99 {res.p99 / 1000:.1f} ms"
                      if not why else "; ".join(why)),
                     intervals=res.intervals)]
    limit = th.get("max_rss_growth_mib", 20)
    if rss_at:
        first_anon, last_anon = rss_at[0][1], rss_at[-1][1]
        grow = last_anon - first_anon
        rows.append(make_row(NAME, mode, "rss growth", grow, "MiB", grow <= limit,
                             f"anon RSS {first_anon:.1f} -> {last_anon:.1f} MiB from the first to the last "
                             f"interval (need <= +{limit} MiB); idle {mib(start['anon']):.1f}, peak tree RSS "
                             f"{mib(sampler.peak_rss):.1f} MiB"))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    p = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        rows += guarded(NAME, mode, lambda: run_mode(mode, p))
    return rows
