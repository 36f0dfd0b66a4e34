"""Verified load for the soak and fault scenarios: length-framed messages that carry a
sequence number and the CRC32 of their body, per-request deadlines, per-interval counts."""
from __future__ import annotations

import errno
import random
import select
import socket
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from stress._net import Address, _check_loopback, _family_for, _reap, _serve_parent, _spawn
from stress.histogram import Histogram

_HDR = struct.Struct(">I")


# ===========================================================================================
# run_checked: length-framed traffic where every message carries a sequence number and the
# CRC32 of its body; per-request deadlines; per-interval counts; hooks for fault injection
# ===========================================================================================
_CHK = struct.Struct(">QI")          # tag (connection id << 40 | sequence), CRC32 of the payload
_BLOCK_LEN = 1 << 17
_BLOCK = random.Random(20261122).randbytes(_BLOCK_LEN + 65536)
DEFAULT_SIZES = ((16, 40), (512, 30), (4096, 20), (65536, 10))   # (frame size, weight)
# per-interval counters, in this order
IVL_FIELDS = ("ok", "failed", "timeouts", "lost", "mismatches", "connect_failed", "bytes")


@dataclass
class CheckedResult:
    ok: int = 0                # responses that arrived whole, in order, with the right CRC
    failed: int = 0            # requests that never got a correct answer (all causes below)
    timeouts: int = 0          # ... no answer within the deadline on a connection still open
    lost: int = 0              # connections the server closed (EOF / reset) while in use
    mismatches: int = 0        # answers that were not byte-exact (wrong length, tag or CRC)
    connect_failed: int = 0
    opened: int = 0
    bytes: int = 0
    duration: float = 0.0
    latency_hist: Histogram = field(default_factory=Histogram)
    intervals: list = field(default_factory=list)   # [{field: count}, ...] per interval
    worker_errors: list = field(default_factory=list)

    def merge(self, o: "CheckedResult") -> None:
        for n in ("ok", "failed", "timeouts", "lost", "mismatches", "connect_failed", "opened", "bytes"):
            setattr(self, n, getattr(self, n) + getattr(o, n))
        self.latency_hist.merge(o.latency_hist)
        self.worker_errors.extend(o.worker_errors)

    p50 = property(lambda self: self.latency_hist.percentile(50))
    p99 = property(lambda self: self.latency_hist.percentile(99))
    p999 = property(lambda self: self.latency_hist.percentile(99.9))

    def summary(self) -> str:
        return (f"ok={self.ok} failed={self.failed} (timeouts={self.timeouts}) lost={self.lost} "
                f"mismatches={self.mismatches} connect_failed={self.connect_failed} "
                f"opened={self.opened} p50={self.p50:.0f}us p99={self.p99:.0f}us")


class _CConn:
    __slots__ = ("cid", "sock", "fd", "out", "inflight", "rbuf", "seq", "depth", "connecting",
                 "want_out", "retry_at", "wanted")

    def __init__(self, cid: int, depth: int) -> None:
        self.cid, self.depth, self.sock, self.fd, self.out = cid, depth, None, -1, b""
        self.inflight: deque = deque()        # (tag, frame length, crc, send time ns)
        self.rbuf, self.seq, self.retry_at = bytearray(), 0, 0.0
        self.connecting = self.want_out = self.wanted = False


class _CheckedWorker:
    def __init__(self, address, family, cids, depths, sizes, timeout, interval, reconnect, seed) -> None:
        self.address, self.family = address, family
        self.conns = [_CConn(c, d) for c, d in zip(cids, depths)]
        self.by_fd: dict[int, _CConn] = {}
        self.ep = select.epoll()
        self.res = CheckedResult()
        self.rng = random.Random(seed)
        self.sizes = [s for s, _ in sizes]
        self.weights = [w for _, w in sizes]
        self.timeout_ns = int(timeout * 1e9)
        self.timeout = timeout
        self.interval, self.reconnect = interval, reconnect
        self.start = 0.0
        self.stop_sending = float("inf")
        self.ivl = [0] * len(IVL_FIELDS)
        self.ivl_index = 0
        self.pipe = None

    # ---- counters ------------------------------------------------------------------------
    def _count(self, idx: int, n: int = 1) -> None:
        self.ivl[idx] += n

    def _fail(self, n: int, kind: int) -> None:
        """n requests failed because of ``kind`` (timeouts / lost / mismatches index)."""
        if n:
            self.res.failed += n
            self.ivl[1] += n
            if kind == 2:
                self.res.timeouts += n
                self.ivl[2] += n

    def _roll(self, now: float) -> None:
        idx = int((now - self.start) // self.interval)
        while idx > self.ivl_index:
            self._flush_interval()

    def _flush_interval(self) -> None:
        self.res.intervals.append(dict(zip(IVL_FIELDS, self.ivl)))
        if self.pipe is not None:
            try:
                self.pipe.send(("tick", self.ivl_index, list(self.ivl)))
            except OSError:
                pass
        self.ivl = [0] * len(IVL_FIELDS)
        self.ivl_index += 1

    # ---- messages --------------------------------------------------------------------------
    def _frame(self, c: _CConn) -> tuple[bytes, tuple]:
        c.seq += 1
        size = self.rng.choices(self.sizes, self.weights)[0]
        plen = size - 4 - _CHK.size
        off = (c.seq * 4099 + c.cid * 131) % _BLOCK_LEN
        payload = _BLOCK[off:off + plen]
        crc = zlib.crc32(payload)
        tag = (c.cid << 40) | c.seq
        frame = _HDR.pack(size - 4) + _CHK.pack(tag, crc) + payload
        return frame, (tag, size, crc, time.monotonic_ns())

    # ---- connections -------------------------------------------------------------------------
    def _open(self, c: _CConn, now: float) -> None:
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setblocking(False)
        if self.family != socket.AF_UNIX:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            s.close()
            self.res.connect_failed += 1
            self._count(5)
            c.retry_at = now + 0.1
            return
        c.sock, c.fd, c.connecting, c.wanted = s, s.fileno(), True, True
        c.out, c.rbuf, c.want_out = b"", bytearray(), True
        c.inflight.clear()
        self.by_fd[c.fd] = c
        self.ep.register(c.fd, select.EPOLLIN | select.EPOLLOUT)

    def _close(self, c: _CConn, now: float, lost: bool) -> None:
        """Close our side. lost: the server closed it (counted, with its pending requests)."""
        if c.sock is None:
            return
        if lost and not c.connecting:
            self.res.lost += 1
            self._count(3)
            self._fail(len(c.inflight), 3)
        elif lost:
            self.res.connect_failed += 1
            self._count(5)
        self.by_fd.pop(c.fd, None)
        try:
            self.ep.unregister(c.fd)
        except OSError:
            pass
        c.sock.close()
        c.sock, c.fd, c.connecting = None, -1, False
        c.inflight.clear()
        c.out = b""
        c.retry_at = now + 0.05

    def _connected(self, c: _CConn, now: float) -> None:
        if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.res.connect_failed += 1
            self._count(5)
            self._close(c, now, lost=False)
            return
        c.connecting = False
        self.res.opened += 1
        self._send(c, c.depth, now)

    def _send(self, c: _CConn, n: int, now: float) -> None:
        if now >= self.stop_sending:
            if not c.out and c.want_out:
                c.want_out = False
                self.ep.modify(c.fd, select.EPOLLIN)
            return
        parts = []
        for _ in range(n):
            frame, rec = self._frame(c)
            parts.append(frame)
            c.inflight.append(rec)
        self._write(c, c.out + b"".join(parts) if c.out else b"".join(parts), now)

    def _write(self, c: _CConn, data: bytes, now: float) -> None:
        try:
            sent = c.sock.send(data) if data else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(c, now, lost=True)
            return
        c.out = data[sent:]
        want = bool(c.out)
        if want != c.want_out:
            c.want_out = want
            self.ep.modify(c.fd, select.EPOLLIN | (select.EPOLLOUT if want else 0))

    def _read(self, c: _CConn, now: float) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(c, now, lost=True)
            return
        if not data:
            self._close(c, now, lost=True)
            return
        buf = c.rbuf
        buf += data
        self.res.bytes += len(data)
        self.ivl[6] += len(data)
        pos, done = 0, 0
        t_end = time.monotonic_ns()
        bad = False
        while c.inflight and len(buf) - pos >= 4:
            need = 4 + _HDR.unpack_from(buf, pos)[0]
            tag, size, crc, t0 = c.inflight[0]
            if need != size:
                bad = True
                break
            if len(buf) - pos < need:
                break
            got_tag, got_crc = _CHK.unpack_from(buf, pos + 4)
            if got_tag != tag or got_crc != crc or \
                    zlib.crc32(memoryview(buf)[pos + 4 + _CHK.size:pos + need]) != crc:
                bad = True
                break
            c.inflight.popleft()
            pos += need
            done += 1
            self.res.latency_hist.record((t_end - t0) // 1000)
        if done:
            self.res.ok += done
            self.ivl[0] += done
        if not bad and buf and not c.inflight and len(buf) > pos:
            bad = True                       # bytes nobody asked for
        if bad:
            # a wrong answer: count it, and give up on this connection (its stream is no
            # longer trustworthy); its other pending requests fail too
            self.res.mismatches += 1
            self.ivl[4] += 1
            self._fail(len(c.inflight), 4)
            c.inflight.clear()
            self._close(c, now, lost=False)
            return
        if pos:
            del buf[:pos]
        if done:
            self._send(c, done, now)

    def _event(self, c: _CConn, ev: int, now: float) -> None:
        if c.connecting:
            if ev & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                self._connected(c, now)
            return
        if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
            self._read(c, now)
        if c.sock is not None and ev & select.EPOLLOUT and c.out:
            self._write(c, c.out, now)

    def _expire(self, now: float) -> None:
        """Requests without an answer within the deadline fail; their connection is dropped
        by us (it cannot be trusted to answer later) and, if wanted, reopened."""
        limit = time.monotonic_ns() - self.timeout_ns
        for c in self.conns:
            if c.sock is not None and not c.connecting and c.inflight and c.inflight[0][3] < limit:
                self._fail(len(c.inflight), 2)
                c.inflight.clear()
                self._close(c, now, lost=False)
            elif c.sock is not None and c.connecting and now - c.retry_at > self.timeout + 0.05:
                self.res.connect_failed += 1
                self._count(5)
                self._close(c, now, lost=False)

    # ---- the run ----------------------------------------------------------------------------
    def run(self, start: float, duration: float) -> CheckedResult:
        self.start = start
        self.stop_sending = start + duration
        while time.monotonic() < start:
            time.sleep(min(0.01, max(0.0, start - time.monotonic())))
        now = time.monotonic()
        for c in self.conns:
            self._open(c, now)
            c.retry_at = now                  # connect deadline base
        next_check = now + 0.2
        hard_end = self.stop_sending + self.timeout + 0.5
        by_fd, poll, event = self.by_fd, self.ep.poll, self._event
        while True:
            for fd, ev in poll(0.05):
                c = by_fd.get(fd)
                if c is not None:
                    event(c, ev, now)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.2
                self._roll(min(now, self.stop_sending))
                self._expire(now)
                if now < self.stop_sending and self.reconnect:
                    for c in self.conns:
                        if c.sock is None and c.retry_at <= now:
                            self._open(c, now)
                            c.retry_at = now
            if now >= self.stop_sending:
                if not any(c.inflight for c in self.conns if c.sock is not None) or now >= hard_end:
                    break
        # whatever is still unanswered after the drain failed (timed out)
        for c in self.conns:
            if c.sock is not None and c.inflight:
                self._fail(len(c.inflight), 2)
                c.inflight.clear()
        if any(self.ivl):
            self._flush_interval()
        self.res.duration = duration
        for c in self.conns:
            if c.sock is not None:
                c.sock.close()
                c.sock = None
        self.ep.close()
        return self.res


def _checked_main(pipe, address, family, cids, depths, sizes, timeout, interval, reconnect, seed,
                  start, duration) -> None:
    def body() -> None:
        w = _CheckedWorker(address, family, cids, depths, sizes, timeout, interval, reconnect, seed)
        w.pipe = pipe
        pipe.send(("result", w.run(start, duration)))

    _serve_parent(pipe, body)


def run_checked(address: Address, *, connections: int = 20, duration: float = 10.0,
                sizes: tuple = DEFAULT_SIZES, pipelined: int = 0, depth: int = 8,
                processes: int = 2, timeout: float = 5.0, interval: float = 5.0,
                reconnect: bool = True, family: Optional[int] = None,
                on_tick: Optional[Callable[[float], None]] = None,
                on_interval: Optional[Callable[[int, dict], None]] = None) -> CheckedResult:
    """Length-framed echo traffic where every answer is verified; for soak and fault runs.

    Each message: 4-byte big-endian body length, then an 8-byte tag (connection id and
    sequence number), the CRC32 of the payload, and the payload (``sizes``: (frame size,
    weight) pairs, 16 B to 64 KiB by default). An answer must have the same length, tag
    and CRC, in order, and the CRC of the received payload must match: byte-exact.

    ``connections`` connections, the last ``pipelined`` of them keep ``depth`` requests in
    flight, the others one (request/response). A request without an answer ``timeout``
    seconds after it was sent fails (retries never hide a loss: the connection is dropped
    and reopened and the request counted failed). After ``duration`` no new request is
    sent and the outstanding ones get ``timeout`` seconds to arrive. A connection the
    server closes is "lost" (with its pending requests failed) and is reopened when
    ``reconnect``.

    ``on_tick(elapsed)`` is called in the caller's process about every 50 ms during the
    run (fault injection); ``on_interval(index, counts)`` once per ``interval`` seconds
    when every process reported that interval.
    """
    _check_loopback(address)
    fam = _family_for(address, family)
    nproc = max(1, min(processes, connections))
    depths = [depth if i >= connections - pipelined else 1 for i in range(connections)]
    start = time.monotonic() + 0.2
    workers = []
    for i in range(nproc):
        cids = list(range(i, connections, nproc))
        workers.append(_spawn(_checked_main, address, fam, cids, [depths[c] for c in cids], sizes,
                              timeout, interval, reconnect, 1000 + i, start, duration))
    total = CheckedResult()
    ticks: dict[int, list] = {}
    reported: dict[int, int] = {}
    emitted = 0
    pending = {pipe: p for p, pipe in workers}
    deadline = start + duration + timeout + 15
    from multiprocessing.connection import wait as mp_wait
    finished = False
    try:
        while pending and time.monotonic() < deadline:
            for pipe in mp_wait(list(pending), timeout=0.05):
                try:
                    msg = pipe.recv()
                except (EOFError, OSError) as exc:
                    total.worker_errors.append(f"worker {pending.pop(pipe).pid}: {exc!r}")
                    continue
                if msg[0] == "tick":
                    _, idx, counts = msg
                    acc = ticks.setdefault(idx, [0] * len(IVL_FIELDS))
                    for k, v in enumerate(counts):
                        acc[k] += v
                    reported[idx] = reported.get(idx, 0) + 1
                elif msg[0] == "result":
                    total.merge(msg[1])
                    pending.pop(pipe)
                else:
                    total.worker_errors.append(msg[1])
                    pending.pop(pipe)
            while emitted in reported and (reported[emitted] == nproc or not pending):
                if on_interval is not None:
                    on_interval(emitted, dict(zip(IVL_FIELDS, ticks[emitted])))
                emitted += 1
            if on_tick is not None and time.monotonic() >= start:
                on_tick(time.monotonic() - start)
        for p in pending.values():
            total.worker_errors.append(f"worker {p.pid} timed out")
        finished = not pending
    finally:
        _reap(workers, kill=not finished)
    total.intervals = [dict(zip(IVL_FIELDS, ticks[i])) for i in sorted(ticks)]
    total.duration = duration
    total.failed += len(total.worker_errors)
    return total


