"""Load drivers for the capacity and churn scenarios: a pool of held-open connections,
and connect/send/receive/close cycles, from several processes (loopback only, bounded)."""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from stress._net import Address, _check_loopback, _family_for, _reap, _recv_reply, _serve_parent, _spawn, raise_nofile
from stress.loadgen import LoadResult, _Worker

_HDR = struct.Struct(">I")


# ===========================================================================================
# ConnectionPool: thousands of idle connections held open, traffic on some of them
# ===========================================================================================
def _pool_main(pipe, address, family, cids, size, framing, connect_timeout, batch) -> None:
    def body() -> None:
        raise_nofile(len(cids) + 256)
        w = _Worker(address, family, cids, size, 1, framing)
        w.connect_all(connect_timeout, batch)
        pipe.send(("open", (w.res.connections_opened, w.res.connections_failed)))
        while pipe.poll(900):                      # bounded: the parent always talks sooner
            cmd = pipe.recv()
            if cmd[0] == "traffic":
                _, start, warmup, duration, active = cmd
                w.res = LoadResult()
                res = w.run(start, warmup, duration, active=active, close=False)
                pipe.send(("result", res))
            elif cmd[0] == "count":
                pipe.send(("count", w.open_count()))
            else:                                   # "close"
                w.close()
                pipe.send(("closed", None))
                return

    _serve_parent(pipe, body)


class ConnectionPool:
    """``connections`` connections spread over processes of at most ``per_process`` each,
    opened in parallel and held open (idle, watched) until ``close()``.

    ``traffic(active, ...)`` runs request/response echo traffic on ``active`` of them (an
    equal share in every process) while the rest stay idle; a server closing an idle one
    counts as a lost connection, and ``open_count()`` tells how many are still open.
    Use as a context manager: the processes are always stopped and reaped.
    """

    def __init__(self, address: Address, connections: int, *, per_process: int = 1000,
                 size: int = 64, framing: str = "none", connect_timeout: float = 30.0,
                 batch: int = 200, family: Optional[int] = None) -> None:
        _check_loopback(address)
        self.address, self.connections = address, connections
        self.size, self.framing = size, framing
        self.connect_timeout, self.batch = connect_timeout, batch
        self.family = _family_for(address, family)
        self.nproc = max(1, -(-connections // per_process))
        self.workers: list = []
        self.errors: list[str] = []
        self.opened = self.failed = 0

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, msg: tuple, timeout: float) -> list:
        live = []
        for p, pipe in self.workers:
            try:
                pipe.send(msg)
                live.append((p, pipe))
            except OSError as exc:
                self.errors.append(f"worker {p.pid}: {exc!r}")
        deadline = time.monotonic() + timeout
        out = []
        for p, pipe in live:
            tag, val = _recv_reply(p, pipe, deadline - time.monotonic())
            if tag == "error":
                self.errors.append(val)
            else:
                out.append(val)
        return out

    def open(self) -> tuple[int, int]:
        """Fork the holders, open every connection; returns (opened, failed)."""
        raise_nofile(self.connections + 256)
        for i in range(self.nproc):
            cids = list(range(i, self.connections, self.nproc))
            self.workers.append(_spawn(_pool_main, self.address, self.family, cids, self.size,
                                       self.framing, self.connect_timeout, self.batch))
        deadline = time.monotonic() + self.connect_timeout + 15
        for p, pipe in self.workers:
            tag, val = _recv_reply(p, pipe, deadline - time.monotonic())
            if tag == "open":
                self.opened += val[0]
                self.failed += val[1]
            else:
                self.errors.append(val)
        return self.opened, self.failed

    def traffic(self, active: int, duration: float, warmup: float = 0.5,
                on_window: Optional[Callable[[float, float], None]] = None) -> LoadResult:
        share = max(1, active // max(1, len(self.workers)))
        start = time.monotonic() + 0.1
        if on_window is not None:
            on_window(start + warmup, start + warmup + duration)
        total = LoadResult()
        for res in self._ask(("traffic", start, warmup, duration, share), warmup + duration + 20):
            total.merge(res)
        total.duration = duration
        return total

    def open_count(self) -> int:
        return sum(self._ask(("count",), 20))

    def close(self) -> None:
        if not self.workers:
            return
        self._ask(("close",), 10)
        _reap(self.workers, kill=True)
        self.workers = []


# ===========================================================================================
# run_churn: connect / send / receive / close cycles from several processes
# ===========================================================================================
@dataclass
class ChurnResult:
    cycles: int = 0            # completed cycles (echo checked)
    failed: int = 0            # connect refused / reset / timed out / closed early
    mismatches: int = 0
    elapsed: float = 0.0
    worker_errors: list = field(default_factory=list)

    def rate(self) -> float:
        return self.cycles / self.elapsed if self.elapsed > 0 else 0.0


_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _churn_cycles(address, family, first, count, size, framing, source, timeout, deadline) -> "ChurnResult":
    """One process's share of the churn: blocking connect / send / read the echo / close."""
    res = ChurnResult()
    t0 = time.monotonic()
    body = max(1, size - 4) if framing == "length" else size
    filler = (bytes(range(33, 127)) * (body // 94 + 2))[:body]
    for i in range(first, first + count):
        if time.monotonic() > deadline:
            break
        tag = b"%x;" % i
        payload = (tag + filler[len(tag):])[:body] if len(tag) < body else tag
        msg = _HDR.pack(len(payload)) + payload if framing == "length" else payload
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            if source:
                # Linux: pick the port at connect() time (per destination), not at bind()
                s.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((source, 0))
            s.connect(address)
            s.sendall(msg)
            got = bytearray()
            while len(got) < len(msg):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            if len(got) < len(msg):
                res.failed += 1
            elif bytes(got) != msg:
                res.mismatches += 1
            else:
                res.cycles += 1
        except OSError:
            res.failed += 1
        finally:
            s.close()
    res.elapsed = time.monotonic() - t0
    return res


def _churn_main(pipe, *args) -> None:
    _serve_parent(pipe, lambda: pipe.send(("result", _churn_cycles(*args))))


def run_churn(address: Address, cycles: int, *, processes: int = 4, size: int = 64,
              framing: str = "none", timeout: float = 5.0, max_seconds: float = 120.0,
              spread_sources: bool = True, family: Optional[int] = None) -> ChurnResult:
    """``cycles`` connect/send/receive-the-echo/close cycles, split over ``processes``
    processes each doing one connection at a time (blocking sockets, ``timeout`` per call).

    ``spread_sources``: on IPv4 loopback each process connects from its own source address
    (127.0.0.10, .11, ...), so that 50,000 cycles in a minute do not run out of ephemeral
    ports (TIME_WAIT holds them 60 s; the client closes first).
    """
    _check_loopback(address)
    fam = _family_for(address, family)
    workers = []
    per = [cycles // processes + (1 if i < cycles % processes else 0) for i in range(processes)]
    deadline = time.monotonic() + max_seconds
    t0 = time.monotonic()
    first = 0
    for i, n in enumerate(per):
        source = f"127.0.0.{10 + i}" if spread_sources and fam == socket.AF_INET else None
        workers.append(_spawn(_churn_main, address, fam, first, n, size, framing, source, timeout, deadline))
        first += n
    total = ChurnResult()
    try:
        for p, pipe in workers:
            tag, val = _recv_reply(p, pipe, deadline + timeout + 10 - time.monotonic())
            if tag == "result":
                total.cycles += val.cycles
                total.failed += val.failed
                total.mismatches += val.mismatches
            else:
                total.worker_errors.append(val)
    finally:
        _reap(workers, kill=True)
    total.elapsed = time.monotonic() - t0
    return total


