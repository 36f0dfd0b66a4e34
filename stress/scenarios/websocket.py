"""WebSocket: 10,000 idle WebSocket connections held, one message pushed to all, all closed.

Proves, per mode, for ``threadswoole.websocket.Server`` (``stress.servers.threadswoole_ws
--fanout --control``): that it holds that many upgraded connections at once (every
handshake answered ``101``, ``stats()['connection_num']`` counts them all), what one costs
in memory (RSS of the whole server tree after opening them minus before, divided by their
number: the HTTP request that upgraded it plus the WebSocket codec, on top of the raw
connection the capacity scenario measures), that a ``push`` from a worker reaches every
one of them (one masked frame ``!fanout:<payload>`` on an extra connection; the server
pushes ``<payload>`` to every other connection; each of the 10,000 must receive exactly
that frame, byte-exact, and nothing else, and still be open afterwards), and that once
the clients close, ``connection_num`` and the tree's fd count return to their baseline.

The connections are opened and held by 10 holder processes of 1,000 each
(``stress.wsfanout.HeldConnections``; RLIMIT_NOFILE raised in the runner, which they
inherit, and by the server itself via ``--rlimit-nofile``, which also sets ``max_conn``).
The clients close with a plain TCP close (no close frame), as clients that go away do.
``--quick``: 2,000 connections.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from stress._net import raise_nofile
from stress.scenarios.common import (MODES, WS_SERVER_MODULE, Server, guarded, http_stats, make_row,
                                     mib, say, settled_snapshot, snapshot, wait_for)
from stress.thresholds import threshold
from stress.wsfanout import TRIGGER, HeldConnections, masked_frame

NAME = "websocket"
MAX_SECONDS = 420
FULL = dict(connections=10_000)
QUICK = dict(connections=2_000)
PAYLOAD = bytes(range(256)) * 2 + b"threadswoole websocket fan-out"   # every byte value, 542 B
PUSH_TIMEOUT = 60.0       # every one of the 10,000 must have the pushed frame by then
SETTLE = 15.0             # for connection_num / fds to return to the baseline after the close


def held_by_server(port: int) -> Optional[int]:
    """Connections the server holds, not counting the probe itself (None: no answer)."""
    st = http_stats(port)
    return None if st is None else st["connection_num"] - 1


def settled_count(port: int, expect: int, timeout: float) -> Optional[int]:
    """``connection_num`` once it equals ``expect`` (bounded by ``timeout``), else its last value.

    A probe's own earlier connection may still be counted for a moment after it returned
    (the server sees its close a little later), so a single reading is not a verdict."""
    last: list[Optional[int]] = [None]

    def reached() -> bool:
        last[0] = held_by_server(port)
        return last[0] == expect
    wait_for(reached, timeout, step=0.2)
    return last[0]


def run_mode(mode: str, n: int) -> list[dict[str, Any]]:
    th = threshold(NAME, mode)
    extra = ["--fanout", "--rlimit-nofile", str(n + 2000)]
    s = Server(mode, extra, module=WS_SERVER_MODULE, framing=None)
    with s as srv:
        port = srv.port
        base_conns = settled_count(port, 0, 5)
        base = settled_snapshot(srv)
        with HeldConnections(("127.0.0.1", port), n) as held:
            t0 = time.monotonic()
            opened, failed = held.open()
            open_s = time.monotonic() - t0
            held_n = settled_count(port, opened, 10)
            time.sleep(0.5)
            snap = snapshot(srv)
            per_conn = (snap["rss"] - base["rss"]) / max(1, opened)
            say(f"{mode}: {opened} open in {open_s:.1f}s ({failed} failed), server holds {held_n}, "
                f"rss {mib(base['rss']):.1f} -> {mib(snap['rss']):.1f} MiB, fds {base['fds']} -> {snap['fds']}")
            trigger = held.connect()
            try:
                frame = masked_frame(TRIGGER + PAYLOAD)
                push = held.push_round(lambda: trigger.sendall(frame), PAYLOAD, PUSH_TIMEOUT)
                after_push = held.count()
                pushed = snapshot(srv)
            finally:
                trigger.close()
            say(f"{mode}: push to all: {push['received']} received, {push['mismatches']} mismatches, "
                f"{push['closed']} closed, last {push['last_ms'] or 0:.0f} ms; after: (open, closed, unexpected) "
                f"{after_push}")
            closed = held.close()
            holder_errors = list(held.errors)
        end_conns = settled_count(port, base_conns or 0, SETTLE)
        end = settled_snapshot(srv, target=base, timeout=SETTLE)
        st = http_stats(port) or {}
    problems = s.problems + holder_errors
    return rows_for(mode, th, n, dict(
        opened=opened, failed=failed, open_s=open_s, held=held_n, per_conn=per_conn, base=base,
        snap=snap, pushed=pushed, push=push, after_push=after_push, closed=closed, base_conns=base_conns,
        end_conns=end_conns, end=end, stats=st, problems=problems))


def rows_for(mode: str, th: dict, n: int, r: dict) -> list[dict[str, Any]]:
    """The four rows of one mode from what ``run_mode`` measured."""
    rows = []
    errors = f"; {'; '.join(r['problems'])}" if r["problems"] else ""
    ok_conns = r["opened"] == n and r["held"] == n
    rows.append(make_row(NAME, mode, "ws connections", r["opened"], "conn", ok_conns,
                         f"{r['opened']} upgraded (101) in {r['open_s']:.1f}s, server holds {r['held']} "
                         f"(stats connection_num); failed {r['failed']}"))
    limit = float(th.get("max_rss_per_conn_kib", 0))
    kib = r["per_conn"] / 1024
    rows.append(make_row(NAME, mode, "rss/ws conn", kib, "KiB", bool(r["opened"]) and kib <= limit,
                         f"tree RSS {mib(r['base']['rss']):.1f} -> {mib(r['snap']['rss']):.1f} MiB for "
                         f"{r['opened']} WebSocket conns (need <= {limit} KiB); anon "
                         f"{mib(r['base']['anon']):.1f} -> {mib(r['snap']['anon']):.1f} MiB; "
                         f"{r['snap']['fds']} fds; after the push to all {mib(r['pushed']['rss']):.1f} MiB"))
    push, (still_open, gone, unexpected) = r["push"], r["after_push"]
    ok_push = (push["received"] == n and push["mismatches"] == 0 and push["closed"] == 0
               and still_open == n and unexpected == 0 and not r["problems"])
    last = push["last_ms"]
    rows.append(make_row(NAME, mode, "push to all", last, "ms", ok_push,
                         f"{push['received']}/{n} got the {len(PAYLOAD)}-byte frame byte-exact "
                         f"({push['mismatches']} mismatches, {push['closed']} closed while waiting); "
                         f"p50 {push['p50_ms'] or 0:.0f} ms; after it {still_open} open, {gone} closed, "
                         f"{unexpected} with unexpected bytes" + errors))
    st, base, end = r["stats"], r["base"], r["end"]
    leaked_conns = (r["end_conns"] - r["base_conns"]) if None not in (r["end_conns"], r["base_conns"]) else None
    leaked = abs(leaked_conns if leaked_conns is not None else n) + abs(end["fds"] - base["fds"])
    rows.append(make_row(NAME, mode, "after close", leaked, "items",
                         leaked == 0 and r["closed"] == r["opened"],
                         f"{r['closed']} closed by the clients; connection_num {r['base_conns']} -> "
                         f"{r['end_conns']}, fds {base['fds']} -> {end['fds']} (both must be back; "
                         f"accept_count {st.get('accept_count')}, close_count {st.get('close_count')}, "
                         f"abort_count {st.get('abort_count')})"))
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = (QUICK if quick else FULL)["connections"]
    raise_nofile(n + 2000)
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        rows += guarded(NAME, mode, lambda: run_mode(mode, n))
    return rows
