"""SWOOLE_PROCESS worker processes: callbacks fed by the reactor threads over a mailbox.

A PipeWorker owns no sockets. Its loop reads events (connect, data, close, packets, pipe
messages, and application-protocol events already parsed by the reactor thread) from its
mailbox and hands them to the event dispatcher; everything the callbacks ask for (send,
close, pause, ...) goes back through the PipeRouter as a message to the reactor thread that
owns the session, batched per loop iteration. Because the sockets live in the master, a
worker can crash, be recycled or be reloaded without any client noticing.

A stopping worker stops reading its mailbox at a message boundary (a chunked message half
read is read to its end first): what is still queued there is read by its replacement, which
inherits the same mailbox. A reload therefore loses no request and no message.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any

from threadswoole import _context
from threadswoole.constants import SWOOLE_WORKER_BUSY, SWOOLE_WORKER_EXIT, SWOOLE_WORKER_IDLE
from threadswoole.ipc import messages
from threadswoole.ipc.mailbox import MailboxLink
from threadswoole.ipc.redelivery import Receiver
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.protocol.codec import EVENT_TYPES
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.child import watch_parent
from threadswoole.workers.commands import answer_command
from threadswoole.workers.dispatch import stateless_dispatch
from threadswoole.workers.event_dispatcher import EventDispatcher
from threadswoole.workers.pipe_router import PipeRouter
from threadswoole.workers.roster import MANAGER, RunConfig
from threadswoole.workers.runtime import Runtime, leave_deadline

log = logging.getLogger("threadswoole")
DRAIN_CHECK_MS = 50
T_EVENT_BASE, T_EVENT_LAST = messages.T_EVENT_BASE, messages.T_EVENT_LAST
CONN_WORDS = layout.CONN_WORDS


class PipeWorker:
    """One PROCESS-mode worker process."""

    def __init__(self, config: RunConfig, state: layout.SharedState, worker_id: int, *, inbox: Any, posts: dict[int, Any], driver: Any) -> None:
        self.config = config
        self.server = config.server
        self.state = state
        self.worker_id = worker_id
        self.driver = driver
        settings = config.settings
        self.reactor = Reactor(f"worker-{worker_id}")
        self.generation = state.begin_generation(worker_id)
        self.counters = StatCounters(state, config.roster.worker_stat_slot(worker_id, self.generation))
        self.runtime = Runtime(worker_id, self.counters, max_request=settings["max_request"], grace=settings.get("max_request_grace", 0), request_stop=self.request_stop)
        self.reactor.periodic.append(self.runtime.flush)
        self.link = MailboxLink(self.reactor, worker_id, posts)
        self._inbox_socket = inbox  # read by the Receiver made in run() (self.inbox from then on)
        self.inbox: messages.Inbox | None = None
        self.router = PipeRouter(self)
        self.transport = driver.worker_transport(worker_id)  # tasks, results, commands
        self.tasks = driver.task_client(worker_id, self.counters, self.transport)
        self.router.tasks = self.tasks
        self.dispatcher = EventDispatcher(self.server, self.runtime, self.router, config.ports, config.callbacks)
        self.ports = config.ports
        self.protocol_handlers = self.dispatcher.handlers  # port index -> its protocol's EventHandler
        # discard_timeout_request: with a stateless dispatch (1, 3) data can reach a worker
        # after its connection closed; Swoole drops it then.
        self.discard_late = bool(settings.get("discard_timeout_request", True)) and stateless_dispatch(settings)
        self.exit_code = 0
        self._stopping = False
        self._stop_started: float | None = None  # monotonic time the stop was asked (its bound runs from there)
        self._status_word = state.worker_base(worker_id) + layout.W_STATUS
        # what _event needs per event, read once: the records' C_LAST_DISPATCH words, the unpackers
        self._d, self._capacity = state.d, state.capacity
        self._dispatch_word = state.conns_base + layout.C_LAST_DISPATCH
        self._unpackers: dict[int, Any] = {}  # message type -> its event class's unpack

    def run(self) -> int:
        _context.bind_worker(self, _context.ROLE_WORKER, False, self.router.send_function)
        state = self.state
        state.set_worker_field(self.worker_id, layout.W_PID, os.getpid())
        state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_IDLE)
        reactors = [messages.reactor_mailbox(r) for r in range(self.config.roster.reactor_num)]
        self.receiver = Receiver(reactors, self.link, self.reactor, self._event, self.state, self.worker_id,
                                 inbox=self._inbox_socket, other=self._event)
        self.inbox = self.receiver.inbox
        self.reactor.add(self.inbox.fd, EPOLLIN, self._on_inbox)
        if self.tasks is not None and self.tasks.reply_fd is not None:
            self.reactor.add(self.tasks.reply_fd, EPOLLIN, self.tasks.drain_expired)  # late task_wait results
        watch_parent(self.reactor, lambda: self.request_stop("orphaned"))
        self.dispatcher.worker_start(self.worker_id)
        self._notify(messages.T_WORKER_STARTED)
        try:
            self.reactor.run()
        except SystemExit as exc:
            self.exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            self.dispatcher.worker_stop(self.worker_id)
        self._flush_out()
        return self.exit_code

    def _notify(self, op: int, payload: bytes = b"") -> None:
        box = self.link.outbox(MANAGER)
        box.put(op, 0, payload)
        box.flush_blocking(1.0)

    # -- events from the reactor threads ----------------------------------------------------
    def _on_inbox(self, _mask: int) -> None:
        q, word = self.state.q, self._status_word  # (state.set_worker_field, without its frames)
        q[word] = SWOOLE_WORKER_BUSY
        try:
            self.receiver.on_readable()  # one datagram per wake-up (see Receiver.on_readable)
        finally:
            if not self._stopping:
                q[word] = SWOOLE_WORKER_IDLE

    def _event(self, type_: int, flags: int, port: int, reactor: int, session: int, payload: bytes, src: int = -1) -> None:
        if T_EVENT_BASE < type_ <= T_EVENT_LAST:  # the commonest first
            # parsed once in the reactor thread; rebuilt here from its packed form
            # the dispatch time is the loop's clock (read right after the poll that saw it)
            self.runtime.dispatches += 1
            self._d[self._dispatch_word + (session - 1) % self._capacity * CONN_WORDS] = self.reactor.clock  # (state.record_base)
            unpack = self._unpackers.get(type_)
            if unpack is None:  # (a classmethod looked up on its class is a new bound method each time)
                unpack = self._unpackers[type_] = EVENT_TYPES[type_ - T_EVENT_BASE].unpack
            event = unpack(payload)
            handler = self.protocol_handlers.get(port)
            if handler is None:
                self.dispatcher.event(self.ports[port], session, reactor, event)  # (logs the drop)
                return
            try:  # (EventDispatcher.event without its frame)
                handler.event(self.ports[port], session, reactor, event)
            except Exception:
                self.runtime.failed(type(event).__name__)
            return
        dispatcher = self.dispatcher
        if type_ == messages.T_DATA:
            if self.discard_late and not self.state.alive(session):
                return  # discard_timeout_request: data of a connection that already closed
            self.runtime.dispatches += 1
            self.state.d[self.state.record_base(session) + layout.C_LAST_DISPATCH] = self.reactor.clock
            dispatcher.receive(self.ports[port], session, reactor, payload)
        elif type_ == messages.T_PROTOCOL_FAILURE:
            dispatcher.protocol_failure(self.ports[port], session, payload)
        elif type_ == messages.T_CONNECT:
            if payload:  # the TLS client certificate (PEM): get_client_info shows it here only
                self.router.client_certs[session] = payload.decode()
            dispatcher.connect(self.ports[port], session, reactor)
        elif type_ == messages.T_CLOSE:
            self.router.forget(session)  # from here on a send fails with 1003 (closing)
            dispatcher.close(self.ports[port], session, reactor)
            self.router.client_certs.pop(session, None)
            self.link.outbox(messages.reactor_mailbox(reactor)).put(messages.T_CLOSE_DONE, session)
        elif type_ == messages.T_PACKET:
            data, client_info = pickle.loads(payload)
            dispatcher.packet(self.ports[port], data, client_info)
        elif type_ == messages.T_BUFFER_FULL:
            dispatcher.buffer_full(self.ports[port], session)
        elif type_ == messages.T_BUFFER_EMPTY:
            dispatcher.buffer_empty(self.ports[port], session)
        elif type_ == messages.T_PIPE_MESSAGE:
            dispatcher.pipe_message(src, payload)
        elif type_ == messages.T_FINISH:
            dispatcher.finish(self.tasks, session, port, payload)
        elif type_ == messages.T_COMMAND:
            answer_command(self.config, self.transport, self.runtime, session, port, payload)
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
        self._stop_started = time.monotonic()
        self.reactor.defer(lambda: self._begin_stop(wait_event))

    def _begin_stop(self, wait_event: bool) -> None:
        # Leave the mailbox at a message boundary: whatever is queued after this point is
        # read by our replacement, which inherits the same mailbox. A chunked message half
        # read is finished first (its sender is still writing it), within max_wait_time.
        self.inbox.finish_messages(time.monotonic() + self.config.settings["max_wait_time"], self.receiver.on_readable)
        self.inbox.paused = True
        self.reactor.remove(self.inbox.fd)
        if self.tasks is not None and self.tasks.reply_fd is not None:
            self.reactor.remove(self.tasks.reply_fd)  # a replacement may share the reply box now
        self.state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_EXIT)
        if wait_event:
            self._notify(messages.T_WORKER_STOPPING, b"\x01" + os.getpid().to_bytes(4, "big"))
            deadline = time.monotonic() + self.config.settings["max_wait_time"]
            self._wait_for_timers(deadline)
            return
        self._leave()

    def _wait_for_timers(self, deadline: float) -> None:
        """Drain: leave once none of the user's timers is left or max_wait_time passed;
        with reload_async, worker_exit runs at every check so the code can clear its timers."""
        if self.config.settings.get("reload_async"):
            self.dispatcher.worker_exit(self.worker_id)
        if self.reactor.user_timer_count() == 0 or time.monotonic() >= deadline:
            self._leave()
        else:
            self.reactor.after(DRAIN_CHECK_MS, self._wait_for_timers, deadline)

    def _leave(self) -> None:
        self.reactor.timers.clear_all()
        self.dispatcher.worker_stop(self.worker_id)
        self._flush_out()
        self.reactor.stop()

    def _flush_out(self) -> None:
        """Push out what the callbacks queued (replies, messages to other workers): a busy
        destination is waited for until the stop's max_wait_time is nearly up; what it has
        not taken then is dropped with a warning (MailboxLink.flush_until)."""
        deadline = leave_deadline(self._stop_started, self.config.settings["max_wait_time"])
        self.link.flush_until(deadline, f"worker {self.worker_id} (leaving)")
