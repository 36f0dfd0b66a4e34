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
Loopback only; every wait has a deadline.
"""
from __future__ import annotations

import os
import select
import socket
import statistics
import struct
import time
from typing import Optional

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
            else:
                for s in socks:
                    s.close()
                pipe.send(("closed", None))
                return

    _serve_parent(pipe, body)


def run_fanout(address: tuple, clients: int = 10000, *, path: str = "/", rounds: int = 3,
               size: int = 64, per_process: int = 1000, round_timeout: float = 30.0,
               connect_timeout: float = 20.0) -> dict:
    """Hold ``clients`` WebSocket connections, push ``rounds`` messages through the server."""
    _check_loopback(address)
    fam = _family_for(address, None)
    nproc = max(1, -(-clients // per_process))
    shares = [clients // nproc + (1 if i < clients % nproc else 0) for i in range(nproc)]
    workers = [_spawn(_holder_main, address, fam, n, path, connect_timeout) for n in shares]
    out: dict = {"clients": clients, "opened": 0, "connect_failed": 0, "rounds": [], "errors": []}
    trigger = None
    try:
        t0 = time.monotonic()
        for p, pipe in workers:
            tag, val = _recv_reply(p, pipe, 120)          # opening 1,000 takes seconds
            if tag == "open":
                out["opened"] += val[0]
                out["connect_failed"] += val[1]
            else:
                out["errors"].append(val)
        out["open_s"] = time.monotonic() - t0
        trigger = ws_connect(address, fam, path, connect_timeout)
        payload = (b"fanout-payload-" * (size // 15 + 1))[:size]
        for r in range(rounds):
            body = payload[:-4] + struct.pack(">I", r) if size >= 4 else payload
            for p, pipe in workers:
                pipe.send(("round", body, round_timeout))
            for p, pipe in workers:
                tag, val = _recv_reply(p, pipe, 10)
                if tag != "armed":
                    out["errors"].append(val)
            sent = time.monotonic()
            trigger.sendall(masked_frame(TRIGGER + body))
            arrivals, mismatches, closed = [], 0, 0
            for p, pipe in workers:
                tag, val = _recv_reply(p, pipe, round_timeout + 10)
                if tag == "result":
                    arrivals += [t - sent for t in val[0] if t is not None]
                    mismatches += val[1]
                    closed += val[2]
                else:
                    out["errors"].append(val)
            out["rounds"].append({
                "received": len(arrivals), "mismatches": mismatches, "closed": closed,
                "last_ms": max(arrivals) * 1000 if arrivals else None,
                "p50_ms": statistics.median(arrivals) * 1000 if arrivals else None})
        for p, pipe in workers:
            pipe.send(("close",))
        for p, pipe in workers:
            _recv_reply(p, pipe, 10)
    finally:
        if trigger is not None:
            trigger.close()
        _reap(workers, kill=True)
    done = [r for r in out["rounds"] if r["last_ms"] is not None]
    out["last_ms"] = statistics.median(r["last_ms"] for r in done) if done else None
    out["p50_ms"] = statistics.median(r["p50_ms"] for r in done) if done else None
    out["received"] = min((r["received"] for r in out["rounds"]), default=0)
    return out
