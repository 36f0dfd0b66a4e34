"""An event worker that owns connections: its reactor, host, dispatcher and router (BASE, THREAD).

The same class runs as a forked process (BASE, worker_num > 1), inline in the master (BASE,
worker_num = 1) or as a thread (THREAD). What differs is wired in by the mode driver through
a `WorkerWiring`: who accepts (the worker itself, or the master handing sockets over), how
operations reach other workers (`carrier`: mailboxes between processes, command queues
between threads), what happens to the connections when the worker restarts (closed, or handed
to its replacement in THREAD mode), and how the supervisor hears that it started or stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from threadswoole import _context
from threadswoole.connections import heartbeat
from threadswoole.connections.acceptor import DatagramReader
from threadswoole.connections.host import Host
from threadswoole.connections.operations import apply_operation
from threadswoole.constants import SWOOLE_WORKER_EXIT, SWOOLE_WORKER_IDLE
from threadswoole.errors import StateError
from threadswoole.ipc import messages
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.commands import answer_command
from threadswoole.workers.event_dispatcher import EventDispatcher, InlineSink
from threadswoole.workers.roster import RunConfig
from threadswoole.workers.router import Carrier, LocalRouter, SessionForwarder
from threadswoole.workers.runtime import Runtime, leave_deadline

log = logging.getLogger("threadswoole")
DRAIN_CHECK_MS = 50


class WorkerWiring:
    """Mode-specific hooks an EventWorker calls; the defaults describe a lone inline worker."""

    role_thread = False  # True in THREAD mode: identity is per thread, the pid is shared
    own_list_only = True  # BASE: connections / get_client_list show this worker's only

    def carrier(self) -> Carrier | None:
        """How operations reach connections owned by other workers (None: there are none)."""
        return None

    def socket_io(self) -> tuple[Any, Any] | None:
        """The (read, write) pair of this worker's plain connections (None: os.read/os.write)."""
        return None

    def attach(self, worker: "EventWorker") -> None:
        """Start accepting or receiving hand-offs; register datagram listeners."""

    def started(self, worker: "EventWorker") -> None:
        """worker_start ran: tell the supervisor (a reload waits for this)."""

    def stopping(self, worker: "EventWorker", wait_event: bool) -> None:
        """The worker is leaving (stop(-1, True) asks for a replacement at once)."""

    def keeps_connections(self, worker: "EventWorker") -> bool:
        """Should the connections outlive this instance (handed to its replacement)?"""
        return False

    def hand_over(self, worker: "EventWorker", connections: list[Any]) -> None:
        """Give the detached connections of a leaving instance to its replacement."""

    def flush_messages(self, worker: "EventWorker", deadline: float) -> None:
        """The worker leaves: push out the messages it queued for other workers, waiting for
        them until the monotonic `deadline` (what is left then is dropped with a warning)."""

    def reroute(self, worker: "EventWorker", message: tuple) -> bool:
        """A message that reached a leaving instance: pass it on to its successor (True), or
        let the caller drop it (False: there is no successor to reach in this mode)."""
        return False

    def reroute_socket(self, worker: "EventWorker", handed: tuple) -> bool:
        """A hand-off that reached a leaving instance: pass it on (True) or refuse it (False)."""
        return False

    def default_idle_time(self) -> float:
        return 0.0


class EventWorker:
    """One event worker. `run()` blocks until the worker stops and returns its exit code."""

    def __init__(self, config: RunConfig, state: layout.SharedState, worker_id: int, wiring: WorkerWiring, driver: Any) -> None:
        self.config = config
        self.server = config.server
        self.state = state
        self.worker_id = worker_id
        self.wiring = wiring
        self.driver = driver
        settings = config.settings
        self.reactor = Reactor(f"worker-{worker_id}")
        self.generation = state.begin_generation(worker_id)
        self.counters = StatCounters(state, config.roster.worker_stat_slot(worker_id, self.generation))
        self.runtime = Runtime(worker_id, self.counters, max_request=settings["max_request"], grace=settings.get("max_request_grace", 0), request_stop=self.request_stop)
        forwarder = SessionForwarder(state, wiring.carrier())
        self.host = Host(settings=settings, state=state, reactor=self.reactor, reactor_id=worker_id, counters=self.counters, sink=None, forwarder=forwarder, socket_io=wiring.socket_io())
        self.router = LocalRouter(self.server, state, driver, self.host, self.runtime, forwarder, wiring.own_list_only)
        self.dispatcher = EventDispatcher(self.server, self.runtime, self.router, config.ports, config.callbacks)
        self.host.sink = InlineSink(self.dispatcher, worker_id)  # (the dispatcher needs the router, which needs the host)
        self._send_function = self.host.make_send_function(self.router.send_checked)
        self._send_path = self.host.make_send_path(self.router.send_checked)
        # tasks, their results and commands (workers/task_client.py, workers/commands.py)
        self.transport = driver.worker_transport(worker_id)
        self.tasks = driver.task_client(worker_id, self.counters, self.transport)
        self.router.tasks = self.tasks
        self.acceptor: Any = None
        self.datagram_readers: list[DatagramReader] = []
        self.stop_reason = ""
        self.exit_code = 0
        self._stopping = False
        self._stop_started: float | None = None  # monotonic time the stop began (its bound runs from there)
        self._finished = False  # the loop has ended (posted calls are drained afterwards)
        self._drain_deadline = 0.0
        self.reactor.periodic.append(self.runtime.flush)

    # -- lifecycle --------------------------------------------------------------------------
    def bind_context(self) -> None:
        _context.bind_worker(self, _context.ROLE_WORKER, self.wiring.role_thread, self._send_function, self._send_path)

    def run(self) -> int:
        self.bind_context()
        state = self.state
        state.set_worker_field(self.worker_id, layout.W_PID, os.getpid())
        state.set_worker_field(self.worker_id, layout.W_TID, threading.get_native_id())
        state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_IDLE)
        self.wiring.attach(self)
        if self.tasks is not None and self.tasks.reply_fd is not None:
            self.reactor.add(self.tasks.reply_fd, EPOLLIN, self.tasks.drain_expired)  # late task_wait results
        interval = self.config.settings.get("heartbeat_check_interval")
        if interval:
            heartbeat.start(self.host, interval, self.wiring.default_idle_time())
        self.dispatcher.worker_start(self.worker_id)
        log.debug("worker %d started (pid %d)", self.worker_id, os.getpid())
        self.wiring.started(self)
        try:
            self.reactor.run()
        except SystemExit as exc:
            self.exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            self.stop_reason = "exit"
            self._leave(graceful=False)
        except BaseException:
            # The loop died (an exception no handler may catch). Close our connections so
            # their clients are not left hanging and their records are retired, then let the
            # supervisor see the crash (worker_error, respawn).
            self.stop_reason = "crash"
            try:
                self.host.close_all()
                self.host.drain(time.monotonic())
            except Exception:
                log.exception("worker %d: closing connections after a crash failed", self.worker_id)
            raise
        finally:
            self._finished = True
            self.runtime.flush()
        return self.exit_code

    def adopt_socket(self, sock: Any, session: int, port: Any, remote: Any) -> None:
        """A socket the master accepted for us (THREAD mode), run on our thread."""
        if self._stopping or self._finished:
            # we are leaving: the next instance of this worker id takes it, or it is refused
            if not self.wiring.reroute_socket(self, (sock, session, port, remote)):
                self.host.refuse(sock, session)
            return
        self.host.adopt(sock, session, port, remote)

    def adopt_moved(self, connections: list[Any]) -> None:
        """Connections a previous instance of this worker id detached, run on our thread."""
        if self._stopping or self._finished:
            self.wiring.hand_over(self, connections)  # on to the next instance (or closed at shutdown)
            return
        for conn in connections:
            self.host.attach(conn, self.worker_id)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self, reason: str = "max_request", wait_event: bool = False) -> None:
        """Stop gracefully from the worker's own thread: stop accepting, close, worker_stop."""
        if self._stopping:
            return
        self.stop_reason = reason
        self.reactor.defer(lambda: self._begin_stop(wait_event))

    def stop_from_any_thread(self, reason: str = "stop", wait_event: bool = False) -> None:
        self.reactor.post(self.request_stop, reason, wait_event)

    def _begin_stop(self, wait_event: bool) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_started = time.monotonic()
        if self.tasks is not None and self.tasks.reply_fd is not None:
            self.reactor.remove(self.tasks.reply_fd)  # a replacement may share the reply box now
        self.wiring.stopping(self, wait_event)
        if self.acceptor is not None:
            self.acceptor.stop()
        for reader in self.datagram_readers:
            reader.stop()
        if wait_event:
            # stop(-1, True): keep serving what is already here until the loop is empty
            # (no connections, no timers) or max_wait_time passes, then leave. Connections
            # that outlive us go to the replacement at once.
            self._hand_over_connections()
            self.state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_EXIT)
            self._drain_deadline = time.monotonic() + self.config.settings["max_wait_time"]
            self.reactor.after(DRAIN_CHECK_MS, self._check_drained)
            return
        self._leave(graceful=True)

    def _check_drained(self) -> None:
        if self.config.settings.get("reload_async"):
            self.dispatcher.worker_exit(self.worker_id)
        idle = not self.host.conns and self.reactor.user_timer_count() == 0
        if idle or time.monotonic() >= self._drain_deadline:
            self._leave(graceful=True)
        else:
            self.reactor.after(DRAIN_CHECK_MS, self._check_drained)

    def _hand_over_connections(self) -> None:
        if self.wiring.keeps_connections(self):
            self.wiring.hand_over(self, self.host.detach_all())

    def _leave(self, graceful: bool) -> None:
        self.reactor.timers.clear_all()
        if graceful:
            self._hand_over_connections()
        self.host.close_all()
        self.dispatcher.worker_stop(self.worker_id)
        max_wait_time = self.config.settings["max_wait_time"]
        self.host.drain(time.monotonic() + (max_wait_time if graceful else 0.0))
        # then what the callbacks queued for other workers (send_message, operations on their
        # sessions), waited for while the stop's max_wait_time lasts (after SystemExit: from now)
        self.wiring.flush_messages(self, leave_deadline(self._stop_started, max_wait_time))
        self.reactor.stop()

    # -- messages from other workers or the owner of a session ------------------------------
    def handle_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        if self._stopping and self.wiring.reroute(self, (type_, flags, port, reactor, src, session, payload)):
            return  # it reached us as we left: our successor handles it (THREAD mode)
        if type_ == messages.T_PIPE_MESSAGE:
            self.dispatcher.pipe_message(src, payload)
            return
        if type_ == messages.T_FINISH:
            self.dispatcher.finish(self.tasks, session, port, payload)
            return
        if type_ == messages.T_COMMAND:
            answer_command(self.config, self.transport, self.runtime, session, port, payload)
            return
        conn = self.host.conns.get(session)
        if conn is None:
            return  # closed meanwhile: the operation is dropped, like Swoole's "session does not exist"
        apply_operation(self.host, conn, type_, payload, src)

    # -- datagrams --------------------------------------------------------------------------
    def listen_datagrams(self, exclusive: bool) -> None:
        for port in self.config.ports:
            if not port.is_stream:
                self.datagram_readers.append(DatagramReader(self.reactor, port, self.dispatcher.packet, self.counters, exclusive))


def check_message_target(config: RunConfig, worker_id: int) -> None:
    """send_message(): an int id in the roster, and a pipe_message callback registered (§5.2)."""
    if isinstance(worker_id, bool) or not isinstance(worker_id, int):
        raise TypeError("worker_id must be an int")
    total = config.roster.total
    if not 0 <= worker_id < total:
        raise ValueError(f"worker_id must be in [0, {total}), got {worker_id}")
    if config.callback("pipe_message") is None:
        raise StateError("send_message() needs a 'pipe_message' callback registered before start()")
