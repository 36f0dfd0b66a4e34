"""WebSocket push fan-out: one message to N connected clients, time until the last has it.

Holder processes (at most ``per_process`` connections each, RLIMIT_NOFILE raised)
open their WebSocket connections (upgrade checked: ``101``) and hold them. For
each round the parent arms every holder (each registers its sockets in an epoll
loop and says so), then sends one masked binary frame ``!fanout:<payload>`` on a
separate trigger connection; the server pushes ``<payload>`` to every other
connection. Each holder records, per connection, the CLOCK_MONOTONIC time its
whole frame arrived (the payload compared byte for byte) and reports back; the
figure is (last arrival - send time), with the median arrival beside it.
CLOCK_MONOTONIC is system-wide on Linux, so times from different processes compare.
``HeldConnections`` is the holding part on its own (open, push rounds, count the open
ones, close), for the stress suite's ``websocket`` scenario. Loopback only; every wait has a deadline.
"""
from __future__ import annotations

import os
import select
import socket
import statistics
import struct
import time
from typing import Callable, Optional

from stress._net import _check_loopback, _family_for, _reap, _recv_reply, _serve_parent, _spawn, raise_nofile

TRIGGER = b"!fanout:"
_UPGRADE = ("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def masked_frame(payload: bytes, opcode: int = 2) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frame_payload(buf: bytes) -> Optional[bytes]:
    """The payload of the (unmasked) frame at the head of ``buf`` once it is complete, else None."""
    if len(buf) < 2:
        return None
    n, pos = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack_from(">H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack_from(">Q", buf, 2)[0], 10
    if buf[1] & 0x80:
        pos += 4                 # a server must not mask, but skip a mask rather than misread
    return bytes(buf[pos:pos + n]) if len(buf) >= pos + n else None


def ws_connect(address: tuple, family: int, path: str, timeout: float) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(_UPGRADE.format(path=path, host=address[0], port=address[1]).encode())
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            got += chunk
        if not got.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {got[:40]!r}")
        return s
    except BaseException:
        s.close()
        raise


def _wait_frames(socks: list[socket.socket], payload: bytes, deadline: float) -> tuple[list, int, int]:
    """Arrival time per socket (None if none by the deadline), mismatches, closed."""
    ep = select.epoll()
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    bufs: dict[int, bytes] = {}
    times: list[Optional[float]] = [None] * len(socks)
    left, mismatches, closed = len(socks), 0, 0
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    try:
        while left and time.monotonic() < deadline:
            for fd, _ev in ep.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    ep.unregister(fd)
                    closed, left = closed + 1, left - 1
                    continue
                buf = bufs.get(fd, b"") + chunk
                got = frame_payload(buf)
                if got is None:
                    bufs[fd] = buf
                    continue
                times[by_fd[fd]] = time.monotonic()
                bufs.pop(fd, None)
                mismatches += got != payload
                ep.unregister(fd)
                left -= 1
    finally:
        ep.close()
    return times, mismatches, closed


def _socket_states(socks: list[socket.socket]) -> tuple[int, int, int]:
    """(open, closed, open with unexpected bytes waiting) right now, without blocking."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks if s.fileno() >= 0}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed, unexpected = len(socks) - len(by_fd), 0      # a socket closed here has fd -1
    for fd, ev in poller.poll(0):
        if ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            closed += 1
            continue
        try:
            peek = by_fd[fd].recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        except OSError:
            peek = b""
        if peek:
            unexpected += 1
        else:
            closed += 1
    return len(socks) - closed, closed, unexpected


def _holder_main(pipe, address, family, count, path, timeout) -> None:
    def body() -> None:
        raise_nofile(count + 256)
        socks, failed = [], 0
        for _ in range(count):
            try:
                socks.append(ws_connect(address, family, path, timeout))
            except OSError:
                failed += 1
        for s in socks:
            s.setblocking(False)
        pipe.send(("open", (len(socks), failed)))
        while pipe.poll(900):                      # bounded: the parent always talks sooner
            cmd = pipe.recv()
            if cmd[0] == "round":
                _, payload, seconds = cmd
                pipe.send(("armed", None))
                pipe.send(("result", _wait_frames(socks, payload, time.monotonic() + seconds)))
            elif cmd[0] == "count":
                pipe.send(("count", _socket_states(socks)))
            else:
                for s in socks:
                    s.close()
                pipe.send(("closed", len(socks)))
                return

    _serve_parent(pipe, body)


class HeldConnections:
    """``clients`` WebSocket connections opened (``101`` checked) and held by holder processes.

    ``with HeldConnections(address, n) as held:`` then ``held.open()`` -> (opened, failed),
    ``held.push_round(send, payload, timeout)`` (every holder waits for ``payload`` while
    ``send()`` makes the server push it), ``held.count()`` -> (open, closed, with unexpected
    bytes), ``held.close()``; leaving the block reaps every holder (killed if need be). A
    holder that fails or does not answer in time adds a line to ``errors``.
    """

    def __init__(self, address: tuple, clients: int, *, path: str = "/", per_process: int = 1000,
                 connect_timeout: float = 20.0) -> None:
        _check_loopback(address)
        self.address, self.family, self.path = address, _family_for(address, None), path
        self.clients, self.connect_timeout = clients, connect_timeout
        nproc = max(1, -(-clients // per_process))
        self.shares = [clients // nproc + (1 if i < clients % nproc else 0) for i in range(nproc)]
        self.workers: list = []
        self.errors: list[str] = []

    def __enter__(self) -> "HeldConnections":
        return self

    def __exit__(self, *exc: object) -> None:
        _reap(self.workers, kill=True)
        self.workers = []

    def _gather(self, tag: str, timeout: float) -> list:
        """The ``tag`` reply of every holder (bounded by ``timeout`` each); others -> errors."""
        values = []
        for p, pipe in self.workers:
            got, val = _recv_reply(p, pipe, timeout)
            if got == tag:
                values.append(val)
            else:
                self.errors.append(str(val))
        return values

    def _tell(self, *cmd: object) -> None:
        for _p, pipe in self.workers:
            try:
                pipe.send(cmd)
            except OSError as exc:
                self.errors.append(f"holder pipe: {exc!r}")

    def open(self, timeout: float = 120.0) -> tuple[int, int]:
        """Start the holders and wait until each has opened its share; (opened, failed)."""
        self.workers = [_spawn(_holder_main, self.address, self.family, n, self.path, self.connect_timeout)
                        for n in self.shares]
        got = self._gather("open", timeout)           # opening 1,000 takes seconds
        return sum(v[0] for v in got), sum(v[1] for v in got)

    def connect(self) -> socket.socket:
        """One more WebSocket connection, held by the caller (e.g. the fan-out trigger)."""
        return ws_connect(self.address, self.family, self.path, self.connect_timeout)

    def push_round(self, send: Callable[[], None], payload: bytes, timeout: float = 30.0) -> dict:
        """Arm every holder for ``payload``, call ``send()``; per-connection arrivals after it."""
        self._tell("round", payload, timeout)
        self._gather("armed", 10)
        sent = time.monotonic()
        send()
        arrivals, mismatches, closed = [], 0, 0
        for times, bad, gone in self._gather("result", timeout + 10):
            arrivals += [t - sent for t in times if t is not None]
            mismatches += bad
            closed += gone
        return {"received": len(arrivals), "mismatches": mismatches, "closed": closed,
                "last_ms": max(arrivals) * 1000 if arrivals else None,
                "p50_ms": statistics.median(arrivals) * 1000 if arrivals else None}

    def count(self, timeout: float = 10.0) -> tuple[int, int, int]:
        """(open, closed, open with unexpected bytes waiting) over every holder, now."""
        self._tell("count")
        got = self._gather("count", timeout)
        return tuple(sum(v[i] for v in got) for i in range(3))     # type: ignore[return-value]

    def close(self, timeout: float = 10.0) -> int:
        """Every holder closes its connections (a plain TCP close); how many were closed."""
        self._tell("close")
        return sum(self._gather("closed", timeout))


def run_fanout(address: tuple, clients: int = 10000, *, path: str = "/", rounds: int = 3,
               size: int = 64, per_process: int = 1000, round_timeout: float = 30.0,
               connect_timeout: float = 20.0) -> dict:
    """Hold ``clients`` WebSocket connections, push ``rounds`` messages through the server."""
    out: dict = {"clients": clients, "opened": 0, "connect_failed": 0, "rounds": []}
    trigger = None
    with HeldConnections(address, clients, path=path, per_process=per_process,
                         connect_timeout=connect_timeout) as held:
        try:
            t0 = time.monotonic()
            out["opened"], out["connect_failed"] = held.open()
            out["open_s"] = time.monotonic() - t0
            trigger = held.connect()
            payload = (b"fanout-payload-" * (size // 15 + 1))[:size]
            for r in range(rounds):
                body = payload[:-4] + struct.pack(">I", r) if size >= 4 else payload
                frame = masked_frame(TRIGGER + body)
                out["rounds"].append(held.push_round(lambda: trigger.sendall(frame), body, round_timeout))
            held.close()
        finally:
            if trigger is not None:
                trigger.close()
        out["errors"] = held.errors
    done = [r for r in out["rounds"] if r["last_ms"] is not None]
    out["last_ms"] = statistics.median(r["last_ms"] for r in done) if done else None
    out["p50_ms"] = statistics.median(r["p50_ms"] for r in done) if done else None
    out["received"] = min((r["received"] for r in out["rounds"]), default=0)
    return out
