"""Faults: worker kills and reloads under load, and clients that misbehave.

Each sub-case runs against its own fresh server, for each mode, and gives its own rows.
The load is ``stress.checked.run_checked``: length-framed request/response traffic whose
every answer is verified (tag + CRC32); a request unanswered 5 s after it was sent
counts as failed, and retries never hide a loss (a reconnect is a new connection; the
requests pending on the old one are counted failed). "Lost" = connections the server
closed while the client was using them. After every sub-case the server must still be
healthy: master alive, answering, all its workers back, ``connection_num`` back to its
baseline once the clients are gone (the server released every connection).

- **kill9**: a worker is killed every 2 s for 10 s under load from 50 connections. BASE and
  PROCESS: ``kill -9`` of a worker process (alternating). THREAD: a thread cannot be
  killed, so the equivalent is used: a ``!ctl:die`` packet makes the callback raise a
  ``BaseException`` that no guard catches, and that worker thread's loop dies (the
  supervisor starts a new one). PROCESS must show 0 failed requests and 0 lost
  connections (the connections live in the master; the killed worker is replaced). BASE
  and THREAD lose the connections of the dead worker by design: reported, not a failure,
  but every failed request must be explained by a lost connection (no request may go
  unanswered on a connection that stays open) and the connections must be released.
- **reload**: ``SIGUSR1`` to the master every 3 s for 10 s under the same load. PROCESS:
  0 failed, 0 lost. BASE / THREAD: the restarted workers' connections close by design.
- **stalled_reader**: 4 clients send 64 KiB requests as fast as the server takes them and
  never read (4 KiB receive buffer), with ``socket_buffer_size`` = 1 MiB; 20 well-behaved
  clients must keep being served (100 % of their requests answered) and the server tree's
  RSS must stay bounded (peak growth under the threshold).
- **slowloris**: 20 clients each send 10 bytes of a packet announcing 1,000 and stall, with
  ``heartbeat_check_interval`` 1 s and ``heartbeat_idle_time`` 2 s: all must be closed by
  the heartbeat within idle + interval + 1.5 s, while 10 well-behaved clients lose nothing.
- **half_open**: 20 clients each that reset (SO_LINGER 0), that die with their process
  (SIGKILL), that half-close (``shutdown(SHUT_WR)``) after a request, and that vanish
  without sending anything (TCP_REPAIR close: no FIN, no RST). The first three must be
  released at once (within 0.5 s), the silent ones by the heartbeat (idle 3 s); then
  ``connection_num`` and the tree's fd count are back to baseline, and the server serves.

- **http** (PROCESS only): kill -9 of a worker, then reloads, under verified HTTP/1.1
  keep-alive load (``http.Server``; see `stress.scenarios.faults_http`): 0 failed, 0 lost.

``--quick``: kills / reloads every 1.5 s for 3 s from 30 connections, 2 s of stalled readers,
3.5 s of slowloris, 10 half-open clients of each kind, a 3 s request deadline.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import time
from typing import Any, Callable, Optional

from stress.checked import CheckedResult, run_checked
from stress.scenarios.faults_http import http_case
from stress.misbehave import half_open_clients, slowloris, stalled_readers
from stress.proctree import Sampler
from stress.scenarios.common import (MODES, connection_count_report, connection_num, guarded,
                                     make_row, mib, say, Server, server_warnings, settled_snapshot,
                                     snapshot, stats, wait_for, worker_pids)
from stress.thresholds import threshold

NAME = "faults"
MAX_SECONDS = 300
SIZES = ((64, 60), (1024, 30), (16384, 10))
TIMEOUT = 5.0
FULL = dict(kill_for=10.0, kill_every=2.0, reload_for=10.5, reload_every=3.0, conns=50,
            stall_for=8.0, slow_for=6.0, half_n=20, after=2.0, timeout=TIMEOUT, settle=5.0,
            extra_wait=10.0)
QUICK = dict(kill_for=3.0, kill_every=1.5, reload_for=3.0, reload_every=1.5, conns=30,
             stall_for=2.0, slow_for=3.5, half_n=10, after=0.5, timeout=3.0, settle=3.0,
             extra_wait=0.0)
STRICT = {"process"}      # modes whose connections must survive worker kills and reloads


def _traffic(port: int, duration: float, conns: int, p: dict,
             on_tick: Optional[Callable[[float], None]] = None) -> CheckedResult:
    return run_checked(("127.0.0.1", port), connections=conns, duration=duration, sizes=SIZES,
                       timeout=p["timeout"], interval=max(1.0, duration), processes=2, on_tick=on_tick)


def _health(srv: Any, mode: str, base: dict, conn0: Optional[int], p: dict) -> tuple[list[str], list[str]]:
    """(server problems, connection-accounting problems) once the clients are gone."""
    settle = p["settle"]
    problems, conn_problems = [], []
    if srv.proc.poll() is not None:
        return [f"server died (rc={srv.proc.returncode}): {srv.stderr_summary()}"], []
    if stats(srv.port) is None:
        problems.append("server does not answer a probe")
    if mode == "thread":
        n = wait_for(lambda: snapshot(srv)["threads"] == base["threads"], settle)
        if not n:
            problems.append(f"threads {base['threads']} -> {snapshot(srv)['threads']} (workers not all back)")
    else:
        if not wait_for(lambda: len(worker_pids(srv)) == len(base["workers"]), settle):
            problems.append(f"workers {len(base['workers'])} -> {len(worker_pids(srv))}")
    if conn0 is not None:
        wait_for(lambda: connection_num(srv.port) == conn0, settle)
        c = connection_num(srv.port)
        if c != conn0:
            logged = server_warnings(srv)
            conn_problems.append(f"connection_num {conn0} -> {c} {settle:.0f} s after every client left: "
                                 + connection_count_report(srv.port, conn0, p["extra_wait"])
                                 + (f"; server log: {logged}" if logged else ""))
    return problems, conn_problems


def _baseline(srv: Any) -> tuple[dict, Optional[int]]:
    time.sleep(0.3)
    base = settled_snapshot(srv)
    base["workers"] = worker_pids(srv)
    return base, connection_num(srv.port)


def _die_packet(port: int) -> socket.socket:
    body = b"!ctl:die"
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(struct.pack(">I", len(body)) + body)
    return s


def _counts(res: CheckedResult) -> str:
    return (f"{res.ok} ok, {res.failed} failed ({res.timeouts} timed out on open connections), "
            f"{res.mismatches} mismatches, {res.lost} lost, {res.connect_failed} connect failures")


# ---- kill9 / reload ----------------------------------------------------------------------------
def _disrupt(mode: str, p: dict, case: str) -> list[dict[str, Any]]:
    s = Server(mode)
    events: list[str] = []
    ctl_socks: list[socket.socket] = []
    with s as srv:
        base, conn0 = _baseline(srv)
        every = p["kill_every"] if case == "kill9" else p["reload_every"]
        span = p["kill_for"] if case == "kill9" else p["reload_for"]
        next_at = [1.0]

        def on_tick(t: float) -> None:
            if t < next_at[0] or t >= span:
                return
            next_at[0] += every
            if case == "reload":
                os.kill(srv.proc.pid, signal.SIGUSR1)
                events.append(f"{t:.1f}s")
            elif mode == "thread":
                ctl_socks.append(_die_packet(srv.port))
                events.append(f"{t:.1f}s")
            else:
                pids = worker_pids(srv)
                if pids:
                    victim = pids[len(events) % len(pids)]
                    try:
                        os.kill(victim, signal.SIGKILL)
                        events.append(str(victim))
                    except ProcessLookupError:
                        pass

        res = _traffic(srv.port, span, p["conns"], p, on_tick)
        for sock in ctl_socks:
            sock.close()
        problems, conn_problems = _health(srv, mode, base, conn0, p)
        now_workers = worker_pids(srv)
    problems += s.problems
    replaced = len(set(base["workers"]) - set(now_workers)) if mode != "thread" else None
    what = {"kill9": "kills" if mode != "thread" else "worker-thread deaths (!ctl:die)", "reload": "reloads"}[case]
    say(f"{mode} {case}: {len(events)} {what}; {_counts(res)}")
    facts = (f"{len(events)} {what}" + (f" ({', '.join(events)})" if case == "kill9" and mode != "thread" else "")
             + (f", {replaced} worker processes replaced" if replaced is not None else "") + "; " + _counts(res))
    strict = mode in STRICT
    if strict:
        ok_req = res.failed == 0 and res.mismatches == 0 and res.ok > 0 and not problems and not res.worker_errors
        ok_conn = res.lost == 0 and not conn_problems
        note = "must be 0"
    else:
        ok_req = res.timeouts == 0 and res.mismatches == 0 and res.ok > 0 and not problems and not res.worker_errors
        ok_conn = not conn_problems
        note = ("by design the dead worker's connections close (every failure must come from a lost "
                "connection: 0 timed out on open ones)")
    detail_req = facts + f"; {note}" + "".join(f"; {x}" for x in problems + res.worker_errors)
    detail_conn = (f"{res.lost} connections closed by the server under {case}; "
                   + ("must be 0" if strict else "by design in this mode (reported)")
                   + "".join(f"; {x}" for x in conn_problems))
    return [make_row(NAME, mode, f"{case} failed", res.failed, "req", ok_req, detail_req),
            make_row(NAME, mode, f"{case} lost", res.lost, "conn", ok_conn, detail_conn)]


# ---- stalled reader ----------------------------------------------------------------------------
def _stalled(mode: str, p: dict) -> list[dict[str, Any]]:
    th = threshold(NAME, mode)
    s = Server(mode, ["--socket-buffer-size", str(1 << 20)])
    with s as srv:
        base, conn0 = _baseline(srv)
        sampler = Sampler(srv.tree, interval=0.1)
        sampler.start()
        bg = stalled_readers(("127.0.0.1", srv.port), n=4, duration=p["stall_for"] + 1.5)
        time.sleep(1.0)                          # let them fill every buffer first
        res = _traffic(srv.port, p["stall_for"], 20, p)
        st = bg.result(timeout=p["stall_for"] + 10)
        sampler.finish()
        problems, conn_problems = _health(srv, mode, base, conn0, p)
    problems += s.problems + conn_problems + res.worker_errors
    if "error" in st:
        problems.append(f"stalled clients: {st['error']}")
    total = res.ok + res.failed
    rate = 100.0 * res.ok / total if total else 0.0
    say(f"{mode} stalled_reader: others {_counts(res)}; stalled {st}; peak rss {mib(sampler.peak_rss):.1f} MiB")
    ok = res.failed == 0 and res.lost == 0 and res.mismatches == 0 and res.ok > 0 and not problems
    grow = mib(sampler.peak_rss - base["rss"])
    limit = th.get("max_stalled_rss_growth_mib", 64)
    stalled_facts = (f"stalled clients pushed {st.get('sent_bytes', 0) / 2**20:.0f} MiB, their writes blocked "
                     f"for the last {st.get('blocked_for_s', 0):.1f} s, {st.get('closed_by_server', 0)} closed "
                     f"by the server")
    return [make_row(NAME, mode, "stalled others ok", rate, "%", ok,
                     f"20 other clients: {_counts(res)}; {stalled_facts}"
                     + "".join(f"; {x}" for x in problems)),
            make_row(NAME, mode, "stalled rss", grow, "MiB", grow <= limit,
                     f"peak tree RSS {mib(base['rss']):.1f} -> {mib(sampler.peak_rss):.1f} MiB with 4 stalled "
                     f"readers and socket_buffer_size 1 MiB (need growth <= {limit} MiB)")]


# ---- slowloris ---------------------------------------------------------------------------------
def _slowloris(mode: str, p: dict) -> list[dict[str, Any]]:
    interval, idle = 1.0, 2.0
    limit = idle + interval + 1.5
    n = 20
    s = Server(mode, ["--heartbeat-interval", str(interval), "--heartbeat-idle", str(idle)])
    with s as srv:
        base, conn0 = _baseline(srv)
        bg = slowloris(("127.0.0.1", srv.port), n=n, duration=max(p["slow_for"], limit + 1))
        res = _traffic(srv.port, p["slow_for"], 10, p)
        sl = bg.result(timeout=p["slow_for"] + limit + 10)
        problems, conn_problems = _health(srv, mode, base, conn0, p)
    problems += s.problems + conn_problems + res.worker_errors
    if "error" in sl:
        problems.append(f"slowloris clients: {sl['error']}")
    closed = sl.get("closed", 0)
    last = sl.get("last_close_s")
    say(f"{mode} slowloris: {sl}; well-behaved {_counts(res)}")
    ok = (closed == n and last is not None and last <= limit and not sl.get("answered")
          and res.failed == 0 and res.lost == 0 and res.mismatches == 0 and res.ok > 0 and not problems)
    return [make_row(NAME, mode, "slowloris closed", closed, "conn", ok,
                     f"{closed}/{n} stalled partial packets closed by the heartbeat after "
                     f"{sl.get('first_close_s')}-{last} s (idle {idle:.0f} s, check every {interval:.0f} s; "
                     f"need <= {limit} s); 10 well-behaved clients: {_counts(res)}"
                     + "".join(f"; {x}" for x in problems))]


# ---- half-open ---------------------------------------------------------------------------------
def _half_open(mode: str, p: dict) -> list[dict[str, Any]]:
    interval, idle = 1.0, 3.0
    n = p["half_n"]
    s = Server(mode, ["--heartbeat-interval", str(interval), "--heartbeat-idle", str(idle)])
    with s as srv:
        base, conn0 = _baseline(srv)
        t0 = time.monotonic()
        info = half_open_clients(("127.0.0.1", srv.port), n)
        vanished = info["vanished"]["connections"]
        time.sleep(0.5)
        early = connection_num(srv.port)
        early_extra = None if early is None or conn0 is None else early - conn0
        released = wait_for(lambda: connection_num(srv.port) == conn0, idle + interval + 3)
        release_s = time.monotonic() - t0
        after = settled_snapshot(srv, target=base, timeout=3)
        res = _traffic(srv.port, p["after"], 20, p)
        problems, conn_problems = _health(srv, mode, base, conn0, p)
        final = connection_num(srv.port)
    problems += s.problems + conn_problems + res.worker_errors
    leaked = (final - conn0) if final is not None and conn0 is not None else None
    say(f"{mode} half_open: {info}; extra connections 0.5 s after: {early_extra} (vanished {vanished}); "
        f"released {bool(released)} after {release_s:.1f}s; fds {base['fds']} -> {after['fds']}")
    why = []
    if early_extra is None or early_extra > vanished:
        why.append(f"{early_extra} connections still held 0.5 s after the RST / kill / half-close "
                   f"clients left (expected only the {vanished} silent ones)")
    if not released:
        why.append(f"connection_num not back to {conn0} within {idle + interval + 3:.0f} s")
    if after["fds"] != base["fds"]:
        why.append(f"fds {base['fds']} -> {after['fds']}")
    if res.failed or res.lost or res.mismatches or not res.ok:
        why.append(f"traffic afterwards: {_counts(res)}")
    why += problems
    sw = info["shut_wr"]
    facts = (f"{n} RST, {n} SIGKILLed, {n} half-closed (echo {sw['echoed']}/{n}, server close {sw['eof']}/{n}) "
             f"released at once; {vanished} vanished without FIN/RST released by the heartbeat "
             f"(idle {idle:.0f} s) after {release_s:.1f} s; fds {base['fds']} -> {after['fds']}"
             + (f"; {info['vanished']['note']}" if info["vanished"]["note"] else ""))
    return [make_row(NAME, mode, "half_open leaked", leaked, "conn", not why and leaked == 0,
                     "; ".join(why) if why else facts)]


CASES: list[tuple[str, Callable[[str, dict], list[dict[str, Any]]]]] = [
    ("kill9", lambda mode, p: _disrupt(mode, p, "kill9")),
    ("reload", lambda mode, p: _disrupt(mode, p, "reload")),
    ("stalled_reader", _stalled),
    ("slowloris", _slowloris),
    ("half_open", _half_open),
    ("http", http_case),
]


def run(quick: bool = False, cases: Optional[list[str]] = None, modes: Optional[list[str]] = None) -> list[dict[str, Any]]:
    p = QUICK if quick else FULL
    rows: list[dict[str, Any]] = []
    for mode in modes or MODES:
        for name, case in CASES:
            if cases and name not in cases:
                continue
            for r in guarded(NAME, mode, lambda: case(mode, p)):
                if r["figure"] == "run":
                    r["figure"] = f"{name} run"
                rows.append(r)
    return rows
