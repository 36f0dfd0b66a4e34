"""How a PROCESS worker's Server calls reach the connections: messages to the owning reactor.

A PROCESS worker owns no socket. `send`, `close`, `pause`, ... become messages to the reactor
thread that owns the session (found in its shared record), batched per loop iteration.
`send()` is admitted here, at the call, exactly as BASE admits it: the worker counts the bytes
it sent to each session, the reactor publishes how many bytes of the session it has written
(layout.C_SEND_WRITTEN), and the difference is what is still on its way or queued. When that is
non-zero and the new data would take it over `socket_buffer_size`, `send()` returns False with
1008; whatever it accepted, the reactor writes (it never drops a worker's send).
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

from threadswoole import _context
from threadswoole.connections import operations
from threadswoole.errors import ErrorCode
from threadswoole.ipc import messages
from threadswoole.state import shared as layout
from threadswoole.workers.event_worker import check_message_target
from threadswoole.workers.router import Router, send_datagram_to

T_SEND = messages.T_SEND
HEADER_PACK, HEADER_SIZE = messages.HEADER.pack, messages.HEADER_SIZE
BATCH_ROOM = messages.BATCH_LIMIT - HEADER_SIZE  # payload bytes a batch can take in one message
CONN_WORDS, C_FLAGS, C_REACTOR, C_SEND_WRITTEN = layout.CONN_WORDS, layout.C_FLAGS, layout.C_REACTOR, layout.C_SEND_WRITTEN
FLAG_CLOSING = layout.FLAG_CLOSING
SEND_AHEAD_LIMIT = 1024 * 1024  # bytes a worker may queue for one reactor before send() waits
FORGET_AT = 65536  # per-session bookkeeping entries before closed sessions are swept


class PipeRouter(Router):
    """Server calls from a PROCESS worker: each becomes a message to the owning reactor thread."""

    role_name = "a PROCESS-mode worker"

    def __init__(self, worker: Any) -> None:
        """`worker` is the PipeWorker this router belongs to (its link, counters, config)."""
        super().__init__(worker.server, worker.state, worker.driver)
        self.worker = worker
        self.link = worker.link
        self.q = worker.state.q
        settings = worker.config.settings
        self.config = worker.config
        self.buffer_output_size: int = settings["buffer_output_size"]
        self.socket_buffer_size: int = settings["socket_buffer_size"]
        self.max_wait_time: float = settings["max_wait_time"]
        self._sent: dict[int, int] = {}  # session -> bytes this worker sent to it (see above)
        self._conns_base = self.state.conns_base
        self._capacity = self.state.capacity
        # reactor id -> its outbox (send_function; a list: one index, no dict lookup per answer)
        self._reactor_boxes = [self.link.outbox(messages.reactor_mailbox(r)) for r in range(worker.config.roster.reactor_num)]
        self.counters = worker.counters
        self._confirmed: set[int] = set()
        self._closed_here: set[int] = set()  # close() asked by this worker, not yet applied
        self.client_certs: dict[int, str] = {}  # session -> TLS client certificate (PEM), until close

    def _live(self, session: int) -> int | None:
        """The record's word index when the session is usable, else None with the error set."""
        if session in self._closed_here:
            _context.set_error(ErrorCode.SESSION_CLOSED_BY_SERVER)
            return None
        base = self.state.record_base(session)
        if self.q[base + layout.C_SESSION] != session or self.q[base + layout.C_FLAGS] & layout.FLAG_CLOSING:
            self._missing(session)
            return None
        return base

    def _to_owner(self, base: int, op: int, session: int, payload: bytes = b"") -> bool:
        self.link.outbox(messages.reactor_mailbox(self.q[base + layout.C_REACTOR])).put(op, session, payload)
        return True

    def client_info(self, session: int, ignore_error: bool) -> Any:
        """Shared-memory info plus `ssl_client_cert` when `connect` fired in this worker (§5.5)."""
        info = super().client_info(session, ignore_error)
        cert = self.client_certs.get(session)
        if cert is not None and isinstance(info, dict):
            info["ssl_client_cert"] = cert
        return info

    def forget(self, session: int) -> None:
        self._confirmed.discard(session)
        self._closed_here.discard(session)
        self._sent.pop(session, None)

    def send_function(self, session: Any, data: Any, server_socket: int = -1) -> bool:
        """Server.send's fast path in a PROCESS worker (the context's send_function): `send`
        below in one frame for the common case (a live session, bytes, room in the pipe); any
        other case takes `send` or `send_checked`, which set the error."""
        if type(data) is not bytes or type(session) is not int or session <= 0:
            return self.send_checked(session, data, server_socket)
        q = self.q
        base = self._conns_base + (session - 1) % self._capacity * CONN_WORDS  # state.record_base
        size = len(data)
        sent_by_session = self._sent
        sent = sent_by_session.get(session, 0)
        # (q[base] is the record's C_SESSION word; a send still on its way takes the full path)
        if q[base] != session or q[base + C_FLAGS] & FLAG_CLOSING or size > self.buffer_output_size \
                or sent > q[base + C_SEND_WRITTEN] or session in self._closed_here or not sent and len(sent_by_session) >= FORGET_AT:
            return self.send(session, data)
        sent_by_session[session] = sent + size
        self.counters.response += 1
        box = self._reactor_boxes[q[base + C_REACTOR]]
        batch = box.batch
        if len(batch) + size <= BATCH_ROOM:  # (so size <= CHUNK_SIZE too)
            # Outbox.put's common case without its frame (every answer passes here)
            batch += HEADER_PACK(T_SEND, 0, 0, 0, box.src, session, 0, size)
            batch += data
        else:
            box.put(T_SEND, session, data)
        if box.pending_bytes > SEND_AHEAD_LIMIT:
            box.flush_blocking(self.max_wait_time)
        return True

    def send(self, session: int, data: bytes) -> bool:
        base = self._live(session)
        if base is None:
            return False
        size = len(data)
        if size > self.buffer_output_size:
            return _context.set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        sent = self._sent.get(session, 0)
        pending = sent - self.q[base + layout.C_SEND_WRITTEN]  # on its way or queued
        if pending > 0 and pending + size > self.socket_buffer_size:
            return _context.set_error(ErrorCode.OUTPUT_BUFFER_OVERFLOW)
        if not sent and len(self._sent) >= FORGET_AT:
            self._sweep()
        self._sent[session] = sent + size
        self.worker.counters.response += 1
        box = self.link.outbox(messages.reactor_mailbox(self.q[base + layout.C_REACTOR]))
        box.put(messages.T_SEND, session, data)
        if box.pending_bytes > SEND_AHEAD_LIMIT:
            # Like Swoole's blocking pipe: a worker that sends faster than the reactor reads
            # its pipe waits here instead of buffering without bound.
            box.flush_blocking(self.max_wait_time)
        return True

    def _sweep(self) -> None:
        """Drop the bookkeeping of closed sessions (close events never come with dispatch 1/3)."""
        alive = self.state.alive
        for session in [s for s in self._sent if not alive(s)]:
            del self._sent[session]
        if len(self._closed_here) > FORGET_AT:
            self._closed_here.clear()

    def sendfile(self, session: int, path: str, offset: int, length: int) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if not os.path.isfile(path):
            return _context.set_error(ErrorCode.SESSION_NOT_EXIST)
        return self._to_owner(base, operations.SENDFILE, session, pickle.dumps((path, offset, length)))

    def close(self, session: int, reset: bool) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if len(self._closed_here) > FORGET_AT:  # close events never came (stateless dispatch)
            self._sweep()
        self._closed_here.add(session)
        return self._to_owner(base, operations.CLOSE, session, b"\x01" if reset else b"")

    def pause(self, session: int, paused: bool) -> bool:
        base = self._live(session)
        return base is not None and self._to_owner(base, operations.PAUSE if paused else operations.RESUME, session)

    def protect(self, session: int, value: bool) -> bool:
        base = self._live(session)
        return base is not None and self._to_owner(base, operations.PROTECT, session, b"\x01" if value else b"")

    def confirm(self, session: int) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if not self.q[base + layout.C_FLAGS] & layout.FLAG_DELAYED or session in self._confirmed:
            return _context.set_error(ErrorCode.SESSION_INVALID_ID)
        self._confirmed.add(session)
        return self._to_owner(base, operations.CONFIRM, session)

    def bind(self, session: int, uid: int) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if self.q[base + layout.C_UID]:
            return _context.set_error(ErrorCode.SESSION_INVALID_ID)
        uid &= 0xFFFF_FFFF
        self.q[base + layout.C_UID] = uid  # visible at once to every worker; the reactor learns it next
        return self._to_owner(base, operations.BIND, session, uid.to_bytes(4, "big"))

    def heartbeat(self, close: bool) -> Any:
        idle_limit = self.driver.default_idle_time()
        if not idle_limit:
            return []
        now = time.time()
        idle = []
        for session in self.state.live_sessions():
            base = self.state.record_base(session)
            if self.q[base + layout.C_FLAGS] & (layout.FLAG_PROTECTED | layout.FLAG_CLOSING):
                continue
            if now - self.state.d[base + layout.C_LAST_RECV] > idle_limit:
                idle.append(session)
                if close:
                    self._to_owner(base, operations.CLOSE, session, b"\x01")
        return idle

    def sendto(self, ip: str, port: int, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, (ip, port), data, server_socket)

    def send_datagram(self, path: str, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, path, data, server_socket)

    def send_message(self, message: Any, worker_id: int) -> bool:
        check_message_target(self.config, worker_id)
        self.link.outbox(worker_id).put(messages.T_PIPE_MESSAGE, 0, pickle.dumps(message))
        return True

    def flush_counters(self) -> None:
        self.worker.runtime.flush()

    def worker_counters(self) -> tuple[int, int, int]:
        runtime = self.worker.runtime
        return runtime.requests, runtime.counters.response, runtime.dispatches


    # -- codec changes and pushes, carried out by the owning reactor ---------------------------
    def switch_codec(self, session: int, spec: bytes) -> bool:
        """Replace the session's codec (HTTP -> WebSocket): after the messages already sent."""
        base = self._live(session)
        return base is not None and self._to_owner(base, operations.SWITCH_CODEC, session, spec)

    def resume_codec(self, session: int) -> bool:
        base = self._live(session)
        return base is not None and self._to_owner(base, operations.RESUME_CODEC, session)

    def push(self, session: int, payload: bytes) -> bool:
        """A message the session's own codec must encode (WebSocket compression)."""
        base = self._live(session)
        return base is not None and self._to_owner(base, operations.PUSH, session, payload)
