"""Heartbeat: find the connections of one Host that sent nothing for too long, and close them.

`heartbeat_check_interval` runs the check on the Host's reactor; `heartbeat_idle_time` (per
listener, or the server's) is how long a connection may stay silent. `protect(fd)` exempts
one. `server.heartbeat(False)` lists the idle ones without closing them.
"""

from __future__ import annotations

import time
from typing import Any

from threadswoole.errors import ErrorCode
from threadswoole.state import shared as layout


def idle_connections(host: Any, now: float, default_idle: float) -> list[Any]:
    """Open, unprotected connections whose last receive is older than their idle limit."""
    words = host.state.d
    idle = []
    for conn in host.conns.values():
        if conn.protected or conn.closing:
            continue
        limit = conn.listener.heartbeat_idle_time or default_idle
        # (a stamp may be up to STAMP_RESOLUTION older than the last read: never closed early)
        if limit and now - words[conn.record + layout.C_LAST_RECV] > limit + layout.STAMP_RESOLUTION:
            idle.append(conn)
    return idle


def check(host: Any, close: bool, default_idle: float) -> list[int]:
    """The idle sessions, ascending; with `close`, each is closed (reset) and counted."""
    idle = idle_connections(host, time.time(), default_idle)
    if close:
        for conn in idle:
            host.counters.heartbeat_closes += 1
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)
    return sorted(conn.session_id for conn in idle)


def start(host: Any, interval: float, default_idle: float) -> int:
    """Check every `interval` seconds (at least one) on the Host's reactor; the timer id."""

    def tick(_timer_id: int) -> None:
        check(host, True, default_idle)

    return host.reactor.tick(max(1.0, interval * 1000), tick)
