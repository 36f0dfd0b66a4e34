"""Self-checks of ``stress.wsfanout.HeldConnections`` (the ``websocket`` scenario's clients).

Against a tiny in-process server that answers the upgrade with ``101`` and then does only
what the check tells it (push a frame to every connection, corrupt some, close some, send
stray bytes), so that each fault is known: a clean push is counted whole and byte-exact,
a corrupted frame is a mismatch, a server-side close and stray bytes show in ``count()``,
and a refused upgrade counts as a failed open. Run by ``python -m stress.selftest ws``
(and ``all``); a few seconds, loopback only.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

from stress.wsfanout import HeldConnections

CLIENTS, PER_PROCESS = 200, 100


class _FakeWsServer(threading.Thread):
    """Accepts, reads each upgrade request, answers ``status`` (101 unless told), holds the socket."""

    def __init__(self, status: bytes = b"101 Switching Protocols") -> None:
        super().__init__(daemon=True)
        self.lsock = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self.lsock.getsockname()[1]
        self.lsock.settimeout(0.2)             # so that stop() is seen within 0.2 s
        self.status, self.conns, self.lock = status, [], threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                c.settimeout(5.0)
                got = b""
                while b"\r\n\r\n" not in got:
                    chunk = c.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed during the upgrade")
                    got += chunk
                c.sendall(b"HTTP/1.1 " + self.status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.append(c)

    def push(self, payload: bytes, corrupt_every: int = 0) -> None:
        head = bytes([0x82]) + (bytes([len(payload)]) if len(payload) < 126 else
                                bytes([126]) + struct.pack(">H", len(payload)))
        with self.lock:
            for i, c in enumerate(self.conns):
                body = payload
                if corrupt_every and i % corrupt_every == 0:
                    body = bytes([payload[0] ^ 0xFF]) + payload[1:]
                c.sendall(head + body)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=2)
        self.lsock.close()
        with self.lock:
            for c in self.conns:
                c.close()


def run(check: Callable[..., None]) -> None:
    payload = bytes(range(256)) + b"selftest"
    srv = _FakeWsServer()
    srv.start()
    try:
        with HeldConnections(("127.0.0.1", srv.port), CLIENTS, per_process=PER_PROCESS) as held:
            opened, failed = held.open(timeout=30)
            check("HeldConnections opens and holds every connection", (opened, failed) == (CLIENTS, 0)
                  and held.count() == (CLIENTS, 0, 0), f"opened {opened}, failed {failed}")
            clean = held.push_round(lambda: srv.push(payload), payload, 10)
            check("HeldConnections counts a clean push whole and byte-exact",
                  clean["received"] == CLIENTS and clean["mismatches"] == 0 and clean["closed"] == 0,
                  str(clean))
            bad = held.push_round(lambda: srv.push(payload, corrupt_every=10), payload, 10)
            check("HeldConnections detects corrupted frames", bad["mismatches"] == CLIENTS // 10,
                  f"{bad['mismatches']} mismatches (need {CLIENTS // 10})")
            with srv.lock:
                for c in srv.conns[:5]:
                    c.shutdown(socket.SHUT_RDWR)
                for c in srv.conns[5:8]:
                    c.sendall(b"stray")
            state = _wait_count(held, (CLIENTS - 5, 5, 3))
            check("HeldConnections.count sees server closes and stray bytes", state == (CLIENTS - 5, 5, 3),
                  f"(open, closed, unexpected) {state}")
            closed = held.close()
            check("HeldConnections.close closes every one", closed == CLIENTS and not held.errors,
                  f"closed {closed}, errors {held.errors}")
    finally:
        srv.stop()
    refusing = _FakeWsServer(b"400 Bad Request")
    refusing.start()
    try:
        with HeldConnections(("127.0.0.1", refusing.port), 20, per_process=10) as held:
            opened, failed = held.open(timeout=30)
            check("HeldConnections counts a refused upgrade as failed", (opened, failed) == (0, 20),
                  f"opened {opened}, failed {failed}")
            held.close()
    finally:
        refusing.stop()


def _wait_count(held: HeldConnections, want: tuple, tries: int = 20) -> tuple:
    """``count()`` until it reads ``want`` (the closes take a moment to arrive) or ``tries`` pass."""
    state = held.count()
    for _ in range(tries):
        if state == want:
            break
        time.sleep(0.1)
        state = held.count()
    return state
