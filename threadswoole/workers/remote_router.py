"""Server calls from a worker that owns no connection: task workers and user processes.

Contract §18.1: task workers and user processes may call `send` and `close` (and the other
connection operations) in every mode. Such a worker has no socket, so each operation becomes a
message to the session's owner, found in its shared record: the owning reactor thread in
PROCESS mode, the owning event worker in BASE (its mailbox) and THREAD (its command queue).
Messages leave at once through the worker's Transport (Swoole: sends from task and user
processes are synchronous), so a user process that loops in its own code needs no event loop
for its sends to go out. Reads (exist, client info, `connections`, stats) come from shared
memory, where every connection of every worker is visible.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Callable

from threadswoole._context import set_error
from threadswoole.connections import operations
from threadswoole.errors import ErrorCode
from threadswoole.ipc import messages
from threadswoole.state import shared as layout
from threadswoole.workers.event_worker import check_message_target
from threadswoole.workers.roster import RunConfig
from threadswoole.workers.router import Router, missing, send_datagram_to
from threadswoole.workers.transport import Transport


def pickled(message: Any, what: str) -> bytes:
    """A copy of `message` for another worker (contract R4); TypeError when it cannot be pickled."""
    try:
        return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(f"{what}(): the message must be picklable (it crosses to another worker as a copy): {exc}") from exc


class RemoteRouter(Router):
    """The router of a task worker or a user process (`role_name` says which)."""

    def __init__(self, config: RunConfig, state: layout.SharedState, driver: Any, transport: Transport, counters: Any, *, owner_mailbox: Callable[[int, int], int], role_name: str, flush_counters_each: bool = False) -> None:
        super().__init__(config.server, state, driver)
        self.config = config
        self.transport = transport
        self.counters = counters
        self.owner_mailbox = owner_mailbox  # (reactor id, worker id) of a session -> its owner's mailbox
        self.role_name = role_name  # type: ignore[misc]
        self.buffer_output_size: int = config.settings["buffer_output_size"]
        self.flush_counters_each = flush_counters_each  # a user process's loop may never run
        self.requests = 0

    def _to_owner(self, op: int, session: int, payload: bytes = b"") -> bool:
        owner = self.state.owner(session)
        if owner is None or not self.state.alive(session):
            return missing(self.state, session)
        return self.transport.post(self.owner_mailbox(*owner), op, session, payload)

    def send(self, session: int, data: bytes) -> bool:
        if len(data) > self.buffer_output_size:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        if not self._to_owner(operations.SEND, session, data):
            return False
        self.counters.response += 1
        if self.flush_counters_each:
            self.counters.flush()
        return True

    def sendfile(self, session: int, path: str, offset: int, length: int) -> bool:
        if not os.path.isfile(path):
            return set_error(ErrorCode.SESSION_NOT_EXIST)
        return self._to_owner(operations.SENDFILE, session, pickle.dumps((path, offset, length)))

    def close(self, session: int, reset: bool) -> bool:
        return self._to_owner(operations.CLOSE, session, b"\x01" if reset else b"")

    def pause(self, session: int, paused: bool) -> bool:
        return self._to_owner(operations.PAUSE if paused else operations.RESUME, session)

    def protect(self, session: int, value: bool) -> bool:
        return self._to_owner(operations.PROTECT, session, b"\x01" if value else b"")

    def confirm(self, session: int) -> bool:
        if self.state.owner(session) is not None and not (self.state.q[self.state.record_base(session) + layout.C_FLAGS] & layout.FLAG_DELAYED):
            return set_error(ErrorCode.SESSION_INVALID_ID)
        return self._to_owner(operations.CONFIRM, session)

    def bind(self, session: int, uid: int) -> bool:
        if self.state.owner(session) is not None and self.state.q[self.state.record_base(session) + layout.C_UID]:
            return set_error(ErrorCode.SESSION_INVALID_ID)
        return self._to_owner(operations.BIND, session, (uid & 0xFFFF_FFFF).to_bytes(4, "big"))

    def push(self, session: int, payload: bytes) -> bool:
        """A WebSocket push from a task worker or user process: encoded by the owner's codec."""
        return self._to_owner(operations.PUSH, session, payload)

    def sendto(self, ip: str, port: int, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, (ip, port), data, server_socket)

    def send_datagram(self, path: str, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, path, data, server_socket)

    def send_message(self, message: Any, worker_id: int) -> bool:
        check_message_target(self.config, worker_id)
        return self.transport.post(worker_id, messages.T_PIPE_MESSAGE, 0, pickled(message, "send_message"))

    def flush_counters(self) -> None:
        self.counters.flush()

    def worker_counters(self) -> tuple[int, int, int]:
        return self.requests, self.counters.response, 0
