"""Multi-process epoll load generator for echo servers (TCP v4/v6 or Unix).

Why: benchmarking a Python server with a Python client on a 2-core machine
only means something if the client is cheap per request and cannot itself be
the single bottleneck. So the connections are split across several forked
worker processes, each running a bare ``select.epoll`` loop; every response
is checked byte-for-byte against what was sent (each message carries its
connection id and a counter), and latencies go into a bounded, mergeable
log-linear histogram (see ``stress.histogram``).

Timeline: workers connect, report ready, the parent broadcasts a common
``CLOCK_MONOTONIC`` start time; ``warmup`` seconds of traffic are not counted,
then ``duration`` seconds are measured, then every socket is closed and the
worker sends its counters back. Every wait has a deadline; hung workers are
killed.

The other drivers for the stress scenarios (all multi-process, loopback-only,
bounded; the process plumbing they share is in ``stress._net``):

- ``stress.loadtools.ConnectionPool`` (built on this module's ``_Worker`` loop):
  thousands of connections held open by processes of at most 1,000 each
  (RLIMIT_NOFILE raised), echo traffic on a subset of them, and a count of how
  many are still open (capacity).
- ``stress.loadtools.run_churn``: connect / send / receive the echo / close
  cycles from several processes (churn).
- ``stress.checked.run_checked``: length-framed traffic where every message
  carries a tag (connection id, sequence number) and the CRC32 of its payload,
  mixed sizes, request/response and pipelined connections, a deadline per
  request (no answer in time = failed; retries never hide a loss), per-interval
  counts and a hook for injecting faults (soak, faults).
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import socket
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from stress._net import _CONNECT_TIMEOUT, Address, _check_loopback, _family_for, _reap, _recv_reply, _serve_parent, _spawn
from stress.histogram import Histogram

_HDR = struct.Struct(">I")
_MAX_FRAME = 64 << 20


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    duration: float = 0.0
    connections_opened: int = 0
    connections_failed: int = 0
    connections_lost: int = 0
    latency_hist: Histogram = field(default_factory=Histogram)
    mismatches: int = 0
    worker_errors: list = field(default_factory=list)

    def rps(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in microseconds."""
        return self.latency_hist.percentile(p)

    p50 = property(lambda self: self.percentile(50))
    p99 = property(lambda self: self.percentile(99))
    p999 = property(lambda self: self.percentile(99.9))

    def merge(self, other: "LoadResult") -> None:
        for name in ("requests", "errors", "bytes_sent", "bytes_received", "connections_opened",
                     "connections_failed", "connections_lost", "mismatches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_hist.merge(other.latency_hist)
        self.worker_errors.extend(other.worker_errors)

    def summary(self) -> str:
        return (f"requests={self.requests} rps={self.rps():.0f} p50={self.p50:.0f}us "
                f"p99={self.p99:.0f}us p999={self.p999:.0f}us errors={self.errors} "
                f"mismatches={self.mismatches} conns={self.connections_opened} "
                f"failed={self.connections_failed} lost={self.connections_lost} "
                f"sent={self.bytes_sent}B recv={self.bytes_received}B dur={self.duration:.2f}s")


class _Conn:
    __slots__ = ("cid", "sock", "fd", "out", "inflight", "rbuf", "counter", "connecting",
                 "want_out", "retry_at")

    def __init__(self, cid: int) -> None:
        self.cid, self.sock, self.fd, self.out = cid, None, -1, b""
        self.inflight: deque = deque()          # (message, send time ns), oldest first
        self.rbuf, self.counter, self.retry_at = bytearray(), 0, 0.0
        self.connecting = self.want_out = False


class _Worker:
    """One process's share of the connections and its epoll loop."""

    def __init__(self, address: Address, family: int, cids: list[int], size: int,
                 depth: int, framing: str) -> None:
        self.address, self.family, self.size = address, family, size
        self.depth, self.framing = depth, framing
        self.conns = [_Conn(c) for c in cids]
        self.by_fd: dict[int, _Conn] = {}
        self.ep = select.epoll()
        self.res = LoadResult()
        self.measure_start = self.measure_end = float("inf")
        body = size - 4 if framing == "length" else size
        self.filler = (bytes(range(33, 127)) * (body // 94 + 2))[:body]

    # ---- messages ---------------------------------------------------------
    def _message(self, c: _Conn) -> bytes:
        c.counter += 1
        tag = b"%x:%x;" % (c.cid, c.counter)
        body = (tag + self.filler[len(tag):]) if len(tag) <= len(self.filler) else tag[:len(self.filler)]
        return _HDR.pack(len(body)) + body if self.framing == "length" else body

    # ---- connection management -------------------------------------------
    def _open(self, c: _Conn) -> None:
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setblocking(False)
        if self.family != socket.AF_UNIX:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            s.close()
            self.res.connections_failed += 1
            c.retry_at = time.monotonic() + 0.1
            return
        c.sock, c.fd, c.connecting = s, s.fileno(), True
        c.out, c.rbuf, c.want_out = b"", bytearray(), True
        c.inflight.clear()
        self.by_fd[c.fd] = c
        self.ep.register(c.fd, select.EPOLLIN | select.EPOLLOUT)

    def _drop(self, c: _Conn, lost: bool, now: float) -> None:
        if c.sock is None:
            return
        in_window = self.measure_start <= now < self.measure_end
        if lost and in_window:
            self.res.connections_lost += 1
            self.res.errors += len(c.inflight)
        self.by_fd.pop(c.fd, None)
        try:
            self.ep.unregister(c.fd)
        except OSError:
            pass
        c.sock.close()
        c.sock, c.fd, c.connecting = None, -1, False
        c.inflight.clear()
        c.retry_at = now + 0.05

    def _connected(self, c: _Conn, now: float, traffic: bool = True) -> None:
        if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.res.connections_failed += 1
            self._drop(c, False, now)
            return
        c.connecting = False
        self.res.connections_opened += 1
        if traffic:
            self._send_new(c, self.depth, now)
        else:
            c.want_out = False
            self.ep.modify(c.fd, select.EPOLLIN)

    # ---- traffic ----------------------------------------------------------
    def _send_new(self, c: _Conn, n: int, now: float) -> None:
        if now >= self.measure_end or n <= 0:
            return
        t = time.monotonic_ns()
        msgs = [self._message(c) for _ in range(n)]
        for m in msgs:
            c.inflight.append((m, t))
        self._write(c, c.out + b"".join(msgs) if c.out else b"".join(msgs), now)

    def _write(self, c: _Conn, data: bytes, now: float) -> None:
        try:
            sent = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(c, True, now)
            return
        if self.measure_start <= now < self.measure_end:
            self.res.bytes_sent += sent
        c.out = data[sent:]
        want = bool(c.out)
        if want != c.want_out:
            c.want_out = want
            self.ep.modify(c.fd, select.EPOLLIN | (select.EPOLLOUT if want else 0))

    def _read(self, c: _Conn, now: float) -> None:
        try:
            # <= 64 KiB: a 256 KiB recv() buffer is above glibc's mmap threshold and costs
            # an mmap+mremap+munmap per call (that is what asyncio's max_size does)
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(c, True, now)
            return
        if not data:
            self._drop(c, True, now)
            return
        counting = self.measure_start <= now < self.measure_end
        res = self.res
        if counting:
            res.bytes_received += len(data)
        buf = c.rbuf
        buf += data
        done = 0
        t_end = time.monotonic_ns()
        pos = 0
        framed = self.framing == "length"
        while c.inflight:
            if framed:
                if len(buf) - pos < 4:
                    break
                need = 4 + _HDR.unpack_from(buf, pos)[0]
                if need > _MAX_FRAME:
                    res.errors += 1
                    self._drop(c, True, now)
                    return
            else:
                need = self.size
            if len(buf) - pos < need:
                break
            msg, t0 = c.inflight.popleft()
            if buf[pos:pos + need] != msg:
                res.mismatches += counting
            pos += need
            done += 1
            if counting:
                res.requests += 1
                res.latency_hist.record((t_end - t0) // 1000)
        if pos:
            del buf[:pos]
        if buf and not c.inflight:
            # bytes nobody asked for: a protocol error; resynchronise by dropping them
            res.mismatches += counting
            buf.clear()
        if done:
            self._send_new(c, done, now)

    def _event(self, c: _Conn, ev: int, now: float) -> None:
        if c.connecting:
            if ev & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                self._connected(c, now)
            return
        if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
            self._read(c, now)
        if c.sock is not None and ev & select.EPOLLOUT and c.out:
            self._write(c, c.out, now)

    # ---- phases -----------------------------------------------------------
    def connect_all(self, timeout: float = _CONNECT_TIMEOUT, batch: int = 0) -> None:
        """Open every connection; wait (bounded) for the handshakes, sending nothing yet.

        ``batch``: at most that many handshakes in progress at once (0: all at once), so
        that thousands of connections do not overflow the server's listen queue.
        """
        deadline = time.monotonic() + timeout
        pending = list(self.conns)
        pending.reverse()
        connecting = 0
        while (pending or connecting) and time.monotonic() < deadline:
            while pending and (not batch or connecting < batch):
                c = pending.pop()
                self._open(c)
                connecting += c.connecting
            for fd, _ev in self.ep.poll(0.1):
                c = self.by_fd.get(fd)
                if c is not None and c.connecting:
                    self._connected(c, time.monotonic(), traffic=False)
                    connecting -= 1
        for c in self.conns:
            if c.connecting:
                self.res.connections_failed += 1
                self._drop(c, False, time.monotonic())
        self.res.connections_failed += len(pending)

    def open_count(self) -> int:
        """Connections still open: a non-blocking peek tells the ones the server closed."""
        n = 0
        for c in self.conns:
            if c.sock is None:
                continue
            try:
                if c.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                continue
            n += 1
        return n

    def run(self, start: float, warmup: float, duration: float, active: Optional[int] = None,
            close: bool = True) -> LoadResult:
        """Traffic on the first ``active`` connections (default all); the others stay idle
        but watched (a server closing one counts as a lost connection)."""
        self.measure_start = start + warmup
        self.measure_end = self.measure_start + duration
        busy = self.conns if active is None else self.conns[:active]
        while time.monotonic() < start:
            time.sleep(min(0.01, max(0.0, start - time.monotonic())))
        now = time.monotonic()
        for c in busy:
            if c.sock is not None:
                self._send_new(c, self.depth, now)
        by_fd, poll, event = self.by_fd, self.ep.poll, self._event
        next_retry = now + 0.05
        while now < self.measure_end:
            for fd, ev in poll(min(0.05, self.measure_end - now)):
                c = by_fd.get(fd)
                if c is not None:
                    event(c, ev, now)
            now = time.monotonic()
            if now >= next_retry:
                next_retry = now + 0.05
                for c in busy:
                    if c.sock is None and c.retry_at <= now < self.measure_end:
                        self._open(c)
        self.res.duration = duration
        if close:
            self.close()
        else:
            self._settle(busy)
        return self.res

    def _settle(self, busy: list) -> None:
        """After a run that keeps its connections: read the echoes still due (bounded), so
        that the connections are idle and reusable."""
        deadline = time.monotonic() + 5.0
        while any(c.inflight for c in busy if c.sock is not None) and time.monotonic() < deadline:
            now = time.monotonic()
            for fd, ev in self.ep.poll(0.05):
                c = self.by_fd.get(fd)
                if c is not None:
                    self._event(c, ev, now)
        for c in busy:
            if c.sock is not None and c.inflight:
                self._drop(c, False, time.monotonic())
            elif c.sock is not None and c.want_out:
                c.want_out = False
                self.ep.modify(c.fd, select.EPOLLIN)

    def close(self) -> None:
        for c in self.conns:
            if c.sock is not None:
                c.sock.close()
                c.sock = None
        self.ep.close()


def _worker_main(pipe, address, family, cids, size, depth, framing, warmup, duration) -> None:
    def body() -> None:
        w = _Worker(address, family, cids, size, depth, framing)
        w.connect_all()
        pipe.send(("ready", None))
        if not pipe.poll(_CONNECT_TIMEOUT + 30):
            return
        msg, start = pipe.recv()
        if msg == "go":
            pipe.send(("result", w.run(start, warmup, duration)))

    _serve_parent(pipe, body)


def run_load(address: Address, *, connections: int = 100, duration: float = 10.0,
             message_size: int = 64, pattern: str = "reqresp", pipeline_depth: int = 16,
             processes: Optional[int] = None, framing: str = "none", warmup: float = 1.0,
             family: Optional[int] = None,
             on_window: Optional[Callable[[float, float], None]] = None) -> LoadResult:
    """Drive an echo server and return the merged counters of the measured window.

    ``on_window(start, end)`` (CLOCK_MONOTONIC seconds) is called in the caller's
    process as soon as the measured window is fixed, so that a caller can sample
    the server (CPU, memory) exactly at its boundaries.
    """
    if pattern not in ("reqresp", "pipelined"):
        raise ValueError(f"unknown pattern {pattern!r}")
    if framing not in ("none", "length"):
        raise ValueError(f"unknown framing {framing!r}")
    if message_size < (5 if framing == "length" else 1):
        raise ValueError("message_size too small for this framing")
    _check_loopback(address)
    fam = _family_for(address, family)
    depth = pipeline_depth if pattern == "pipelined" else 1
    nproc = processes or min(2, os.cpu_count() or 1)
    nproc = max(1, min(nproc, connections))
    workers = [_spawn(_worker_main, address, fam, list(range(i, connections, nproc)), message_size,
                      depth, framing, warmup, duration) for i in range(nproc)]
    total = LoadResult()
    finished = False
    try:
        live = []
        deadline = time.monotonic() + _CONNECT_TIMEOUT + 5
        for p, pipe in workers:
            tag, val = _recv_reply(p, pipe, deadline - time.monotonic())
            if tag == "ready":
                live.append((p, pipe))
            else:
                total.worker_errors.append(val)
        start = time.monotonic() + 0.05
        if on_window is not None:
            on_window(start + warmup, start + warmup + duration)
        for p, pipe in list(live):
            try:
                pipe.send(("go", start))
            except OSError as exc:
                live.remove((p, pipe))
                total.worker_errors.append(f"worker {p.pid}: {exc!r}")
        deadline = start + warmup + duration + 10
        for p, pipe in live:
            tag, val = _recv_reply(p, pipe, deadline - time.monotonic())
            if tag == "result":
                total.merge(val)
            else:
                total.worker_errors.append(val)
        finished = True
    finally:
        _reap(workers, kill=not finished)     # interrupted (e.g. a suite time limit): don't wait
    total.duration = duration
    total.errors += len(total.worker_errors)
    return total


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.loadgen", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9501)
    ap.add_argument("--unix", help="Unix stream socket path (instead of host/port)")
    ap.add_argument("-c", "--connections", type=int, default=100)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("-s", "--size", type=int, default=64, help="message size in bytes (header included)")
    ap.add_argument("--pattern", choices=("reqresp", "pipelined"), default="reqresp")
    ap.add_argument("--depth", type=int, default=16, help="pipeline depth (pattern pipelined)")
    ap.add_argument("--framing", choices=("none", "length"), default="none")
    ap.add_argument("--processes", type=int, default=None)
    ap.add_argument("--warmup", type=float, default=1.0)
    a = ap.parse_args(argv)
    address: Address = a.unix if a.unix else (a.host, a.port)
    r = run_load(address, connections=a.connections, duration=a.duration, message_size=a.size,
                 pattern=a.pattern, pipeline_depth=a.depth, processes=a.processes,
                 framing=a.framing, warmup=a.warmup)
    print(r.summary(), flush=True)
    for e in r.worker_errors:
        print("worker error:", e, file=sys.stderr)
    return 0 if not r.worker_errors and r.mismatches == 0 and r.requests > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
