"""Choosing the worker for an event: `dispatch_mode` 1-5 and `dispatch_func` (contract §18.6).

Modes 2, 4 and 5 are stable per connection (every event of a connection reaches the same
worker); modes 1 and 3 are stateless, which is why Swoole then suppresses `connect` and
`close` unless `enable_unsafe_event` is set, and drops data that reaches a worker after its
connection closed while `discard_timeout_request` is on.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import zlib
from typing import Any, Callable

from threadswoole.constants import SWOOLE_WORKER_IDLE
from threadswoole.state import shared as layout
log = logging.getLogger("threadswoole")

ROUND, FDMOD, IDLE, IPMOD, UIDMOD = 1, 2, 3, 4, 5
# event types handed to dispatch_func (Swoole's: 0 data, 4 close, 5 connect)
EVENT_DATA, EVENT_CLOSE, EVENT_CONNECT = 0, 4, 5
FUNC_DATA_LIMIT = 8180


def ip_key(address: str) -> int:
    """Mode 4: an IPv4 address as an unsigned int; IPv6 hashed (stable) to 32 bits."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return zlib.crc32(address.encode())
    if ip.version == 4:
        return int(ip)
    if ip.ipv4_mapped is not None:
        return int(ip.ipv4_mapped)
    return zlib.crc32(ip.packed)


def stateless_dispatch(settings: Any) -> bool:
    """Modes 1 and 3 without a dispatch_func: events of one connection may reach different
    workers, so connect/close are suppressed and late data can be discarded."""
    return settings.get("dispatch_func") is None and settings.get("dispatch_mode", FDMOD) in (ROUND, IDLE)


class Dispatcher:
    """Maps (session, event) to a worker index in [0, worker_num); one per reactor thread."""

    def __init__(self, server: Any, settings: Any, state: layout.SharedState, worker_num: int) -> None:
        setting = settings
        self.server = server
        self.state = state
        self.worker_num = worker_num
        self.mode: int = setting.get("dispatch_mode", FDMOD)
        self.func: Callable[..., Any] | None = setting.get("dispatch_func")
        self._round = itertools.count()
        self.stateless = stateless_dispatch(setting)
        # Stateless modes cannot keep connect/receive/close of one connection in order.
        self.deliver_connect_close = not self.stateless or setting.get("enable_unsafe_event", False)
        # the hot path of PROCESS mode: the default (by session) needs no call
        self.by_session = self.func is None and self.mode == FDMOD

    def worker_for(self, session: int, remote_ip: str, uid: int, event: int, data: bytes = b"") -> int:
        if self.func is not None:
            return self._by_function(session, event, data)
        mode = self.mode
        worker_num = self.worker_num
        if mode == FDMOD:
            return session % worker_num
        if mode == ROUND:
            return next(self._round) % worker_num
        if mode == IDLE:
            return self._idle()
        if mode == IPMOD:
            return ip_key(remote_ip) % worker_num
        if mode == UIDMOD:
            return (uid if uid else session) % worker_num
        return session % worker_num

    def _idle(self) -> int:
        """Mode 3: the first idle worker after a round-robin start; round robin if all are busy."""
        start = next(self._round)
        state = self.state
        for offset in range(self.worker_num):
            worker = (start + offset) % self.worker_num
            if state.worker_field(worker, layout.W_STATUS) == SWOOLE_WORKER_IDLE:
                return worker
        return start % self.worker_num

    def _by_function(self, session: int, event: int, data: bytes) -> int:
        try:
            worker = self.func(self.server, session, event, data[:FUNC_DATA_LIMIT])  # type: ignore[misc]
        except Exception:
            log.exception("dispatch_func raised; dispatching session %d by session id", session)
            return session % self.worker_num
        if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < self.worker_num:
            log.error("dispatch_func returned %r (not a worker id in [0, %d)); dispatching by session id", worker, self.worker_num)
            return session % self.worker_num
        return worker
