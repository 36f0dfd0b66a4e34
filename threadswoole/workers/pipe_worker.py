"""SWOOLE_PROCESS worker processes: callbacks fed by the reactor threads over a mailbox.

A PipeWorker owns no sockets. Its loop reads events (connect, data, close, packets, pipe
messages) from its mailbox and runs the callbacks; everything the callbacks ask for (send,
close, pause, ...) goes back as a message to the reactor thread that owns the session,
batched per loop iteration. Because the sockets live in the master, a worker can crash,
be recycled or be reloaded without any client noticing.

A stopping worker stops reading its mailbox at a message boundary: what is still queued
there is read by its replacement, which inherits the same mailbox. A reload therefore
loses no request.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any

from threadswoole import _context
from threadswoole.constants import SWOOLE_WORKER_BUSY, SWOOLE_WORKER_EXIT, SWOOLE_WORKER_IDLE
from threadswoole.errors import ErrorCode
from threadswoole.ipc import messages
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.event_worker import check_message_target
from threadswoole.ipc.mailbox import MailboxLink
from threadswoole.modes.common import MANAGER, watch_parent
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.modes.reactor_thread import reactor_mailbox
from threadswoole.ipc.redelivery import Receiver
from threadswoole.workers.router import Router, send_datagram_to
from threadswoole.workers.runtime import Runtime

log = logging.getLogger("threadswoole")
DRAIN_CHECK_MS = 50
SEND_AHEAD_LIMIT = 1024 * 1024  # bytes a worker may queue for one reactor before send() waits


class PipeWorker:
    """One PROCESS-mode worker process."""

    def __init__(self, driver: Any, worker_id: int) -> None:
        self.driver = driver
        self.server = server = driver.server
        self.state = state = driver.state
        self.worker_id = worker_id
        self.reactor = Reactor(f"worker-{worker_id}")
        self.generation = state.begin_generation(worker_id)
        self.counters = StatCounters(state, driver.worker_slot(worker_id, self.generation))
        self.reactor.periodic.append(self.counters.flush)
        setting = server.setting
        self.runtime = Runtime(server, worker_id, self.counters, max_request=setting["max_request"], grace=setting.get("max_request_grace", 0), request_stop=self.request_stop)
        self.link = MailboxLink(self.reactor, worker_id, driver.posts)
        self.inbox = messages.Inbox(driver.inboxes[worker_id], self.on_message)
        self.router = PipeRouter(self)
        self.ports = server.ports
        self.discard_late = bool(setting.get("discard_timeout_request", True)) and setting.get("dispatch_func") is None and setting.get("dispatch_mode", 2) in (1, 3)
        self.exit_code = 0
        self._stopping = False

    def run(self) -> int:
        ctx = _context.current()
        ctx.server = self.server
        ctx.role = _context.ROLE_WORKER
        ctx.worker_id = self.worker_id
        ctx.worker_pid = os.getpid()
        ctx.worker_tid = None
        ctx.loop = self.reactor
        ctx.router = self.router
        ctx.runtime = self.runtime
        ctx.worker_obj = self
        state = self.state
        state.set_worker_field(self.worker_id, layout.W_PID, os.getpid())
        state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_IDLE)
        self.reactor.add(self.inbox.fd, EPOLLIN, self._on_inbox)
        reactors = [reactor_mailbox(r) for r in range(self.driver.reactor_num)]
        self.receiver = Receiver(reactors, self.link, self.reactor, self._event, self.state, self.worker_id)
        watch_parent(self.reactor, lambda: self.request_stop("orphaned"))
        self.runtime.start()
        self._notify(messages.T_WORKER_STARTED)
        try:
            self.reactor.run()
        except SystemExit as exc:
            self.exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            self.runtime.stop()
        self.link.flush_now(1.0)
        return self.exit_code

    def _notify(self, op: int, payload: bytes = b"") -> None:
        box = self.link.outbox(MANAGER)
        box.put(op, 0, payload)
        box.flush_blocking(1.0)

    # -- events from the reactor threads ----------------------------------------------------
    def _on_inbox(self, _mask: int) -> None:
        state = self.state
        state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_BUSY)
        try:
            self.inbox.on_readable()
        finally:
            if not self._stopping:
                state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_IDLE)

    def on_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        if src <= -100:  # from a reactor thread: numbered, possibly redelivered (see _redelivery.py)
            self.receiver.handle(src, self.inbox.msg_id, type_, flags, port, reactor, session, payload)
            return
        self._event(type_, flags, port, reactor, session, payload, src)

    def _event(self, type_: int, flags: int, port: int, reactor: int, session: int, payload: bytes, src: int = -1) -> None:
        server = self.server
        runtime = self.runtime
        if type_ == messages.T_DATA:
            if self.discard_late and not self.state.alive(session):
                return  # discard_timeout_request: data of a connection that already closed
            runtime.count_request()
            runtime.dispatches += 1
            self.state.d[self.state.record_base(session) + layout.C_LAST_DISPATCH] = time.time()
            try:
                self.ports[port].on_receive(server, session, reactor, payload)
            except Exception:
                runtime.failed("receive")
            runtime.check_max_request()
        elif type_ == messages.T_CONNECT:
            if payload:  # the TLS client certificate (PEM): get_client_info shows it here only
                self.router.client_certs[session] = payload.decode()
            runtime.call("connect", self.ports[port].on_connect, server, session, reactor)
        elif type_ == messages.T_CLOSE:
            self.router.forget(session)  # from here on a send fails with 1003 (closing)
            runtime.call("close", self.ports[port].on_close, server, session, reactor)
            self.router.client_certs.pop(session, None)
            self.link.outbox(reactor_mailbox(reactor)).put(messages.T_CLOSE_DONE, session)
        elif type_ == messages.T_PACKET:
            data, client_info = pickle.loads(payload)
            runtime.count_request()
            runtime.call("packet", self.ports[port].on_packet, server, data, client_info)
            runtime.check_max_request()
        elif type_ == messages.T_BUFFER_FULL:
            runtime.call("buffer_full", self.ports[port].on_buffer_full, server, session)
        elif type_ == messages.T_BUFFER_EMPTY:
            runtime.call("buffer_empty", self.ports[port].on_buffer_empty, server, session)
        elif type_ == messages.T_PIPE_MESSAGE:
            runtime.call("pipe_message", server._callbacks.lookup("pipe_message"), server, src, pickle.loads(payload))
        elif type_ == messages.T_STOP_WORKER:
            self.request_stop("stop", payload == b"\x01")

    # -- stopping ---------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self, reason: str = "max_request", wait_event: bool = False) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.reactor.defer(lambda: self._begin_stop(wait_event))

    def _begin_stop(self, wait_event: bool) -> None:
        # Leave the mailbox at a message boundary: whatever is queued after this point is
        # read by our replacement, which inherits the same mailbox.
        deadline = time.monotonic() + 1.0
        while self.inbox._partial and time.monotonic() < deadline:
            self.inbox.on_readable()
        self.inbox.paused = True
        self.reactor.remove(self.inbox.fd)
        self.state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_EXIT)
        if wait_event:
            self._notify(messages.T_WORKER_STOPPING, b"\x01" + os.getpid().to_bytes(4, "big"))
            deadline = time.monotonic() + self.server.setting["max_wait_time"]
            self._wait_for_timers(deadline)
            return
        self._leave()

    def _wait_for_timers(self, deadline: float) -> None:
        """Drain: leave once none of the user's timers is left or max_wait_time passed;
        with reload_async, worker_exit runs at every check so the code can clear its timers."""
        if self.server.setting.get("reload_async"):
            self.runtime.call("worker_exit", self.server._callbacks.lookup("worker_exit"), self.server, self.worker_id)
        if self.reactor.user_timer_count() == 0 or time.monotonic() >= deadline:
            self._leave()
        else:
            self.reactor.after(DRAIN_CHECK_MS, self._wait_for_timers, deadline)

    def _leave(self) -> None:
        self.reactor.timers.clear_all()
        self.runtime.stop()
        self.link.flush_now(1.0)
        self.reactor.stop()


class PipeRouter(Router):
    """Server calls from a PROCESS worker: each becomes a message to the owning reactor thread."""

    role_name = "a PROCESS-mode worker"

    def __init__(self, worker: PipeWorker) -> None:
        super().__init__(worker.server, worker.state, worker.driver)
        self.worker = worker
        self.link = worker.link
        self.q = worker.state.q
        setting = worker.server.setting
        self.buffer_output_size: int = setting["buffer_output_size"]
        self.socket_buffer_size: int = setting["socket_buffer_size"]
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
        self.link.outbox(reactor_mailbox(self.q[base + layout.C_REACTOR])).put(op, session, payload)
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

    def send(self, session: int, data: bytes) -> bool:
        base = self._live(session)
        if base is None:
            return False
        size = len(data)
        if size > self.buffer_output_size:
            return _context.set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        queued = self.q[base + layout.C_SEND_QUEUED]
        if (queued and queued + size > self.socket_buffer_size) or self.q[base + layout.C_FLAGS] & layout.FLAG_OVERFLOW:
            return _context.set_error(ErrorCode.OUTPUT_BUFFER_OVERFLOW)
        self.worker.counters.response += 1
        box = self.link.outbox(reactor_mailbox(self.q[base + layout.C_REACTOR]))
        box.put(messages.T_SEND, session, data)
        if box.pending_bytes > SEND_AHEAD_LIMIT:
            # Like Swoole's blocking pipe: a worker that sends faster than the reactor writes
            # waits here, so the reactor's view of the send queue (and overflow) keeps up.
            box.flush_blocking(self.server.setting["max_wait_time"])
        return True

    def sendfile(self, session: int, path: str, offset: int, length: int) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if not os.path.isfile(path):
            return _context.set_error(ErrorCode.SESSION_NOT_EXIST)
        return self._to_owner(base, messages.T_SENDFILE, session, pickle.dumps((path, offset, length)))

    def close(self, session: int, reset: bool) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if len(self._closed_here) > 65536:  # close events never came (stateless dispatch): bound it
            self._closed_here.clear()
        self._closed_here.add(session)
        return self._to_owner(base, messages.T_CLOSE_REQUEST, session, b"\x01" if reset else b"")

    def pause(self, session: int, paused: bool) -> bool:
        base = self._live(session)
        return base is not None and self._to_owner(base, messages.T_PAUSE if paused else messages.T_RESUME, session)

    def protect(self, session: int, value: bool) -> bool:
        base = self._live(session)
        return base is not None and self._to_owner(base, messages.T_PROTECT, session, b"\x01" if value else b"")

    def confirm(self, session: int) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if not self.q[base + layout.C_FLAGS] & layout.FLAG_DELAYED or session in self._confirmed:
            return _context.set_error(ErrorCode.SESSION_INVALID_ID)
        self._confirmed.add(session)
        return self._to_owner(base, messages.T_CONFIRM, session)

    def bind(self, session: int, uid: int) -> bool:
        base = self._live(session)
        if base is None:
            return False
        if self.q[base + layout.C_UID]:
            return _context.set_error(ErrorCode.SESSION_INVALID_ID)
        uid &= 0xFFFF_FFFF
        self.q[base + layout.C_UID] = uid  # visible at once to every worker; the reactor learns it next
        return self._to_owner(base, messages.T_BIND, session, uid.to_bytes(4, "big"))

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
                    self._to_owner(base, messages.T_CLOSE_REQUEST, session, b"\x01")
        return idle

    def sendto(self, ip: str, port: int, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, (ip, port), data, server_socket)

    def send_datagram(self, path: str, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, path, data, server_socket)

    def send_message(self, message: Any, worker_id: int) -> bool:
        check_message_target(self.server, worker_id)
        self.link.outbox(worker_id).put(messages.T_PIPE_MESSAGE, 0, pickle.dumps(message))
        return True

    def flush_counters(self) -> None:
        self.worker.counters.flush()

    def worker_counters(self) -> tuple[int, int, int]:
        runtime = self.worker.runtime
        return runtime.requests, runtime.counters.response, runtime.dispatches

