"""An event worker that owns connections: its reactor, host, runtime and router (BASE and THREAD).

The same class runs as a forked process (BASE, worker_num > 1), inline in the master (BASE,
worker_num = 1) or as a thread (THREAD). What differs is wired in by the mode driver through
a `WorkerWiring`: who accepts (the worker itself, or the master handing sockets over), how
operations reach other workers (mailboxes between processes, command queues between
threads), and how the supervisor is told that the worker started or is stopping.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from typing import Any, Callable

from threadswoole import _context
from threadswoole.constants import SWOOLE_WORKER_EXIT, SWOOLE_WORKER_IDLE
from threadswoole.errors import ErrorCode, StateError
from threadswoole.ipc import messages
from threadswoole.state import shared as layout
from threadswoole.connections.acceptor import DatagramReader
from threadswoole.state.counters import StatCounters
from threadswoole.connections.host import Host
from threadswoole.loop.reactor import Reactor
from threadswoole.workers.router import LocalRouter
from threadswoole.workers.runtime import InlineSink, Runtime

log = logging.getLogger("threadswoole")
DRAIN_CHECK_MS = 50


class WorkerWiring:
    """Mode-specific hooks an EventWorker calls; the defaults describe a lone inline worker."""

    role_thread = False  # True in THREAD mode: identity is per thread, the pid is shared
    own_list_only = True  # BASE: connections / get_client_list show this worker's only

    def stat_slot(self, worker_id: int, generation: int) -> int:
        """Two stats slots per worker id, by generation parity: while an old instance drains
        (reload_async, stop(-1, true)) and its replacement runs, each writes its own slot."""
        return 1 + 2 * worker_id + (generation & 1)

    def attach(self, worker: "EventWorker") -> None:
        """Start accepting or receiving hand-offs; register datagram listeners."""

    def forwarder(self, worker: "EventWorker") -> Any:
        return None

    def started(self, worker: "EventWorker") -> None:
        """worker_start ran: tell the supervisor (a reload waits for this)."""

    def stopping(self, worker: "EventWorker", wait_event: bool) -> None:
        """The worker is leaving (stop(-1, True) asks for a replacement at once)."""

    def request_supervisor(self, op: int, payload: bytes = b"") -> bool:
        """Reload / shutdown / stop requests from inside the worker."""
        return False

    def send_message(self, worker: "EventWorker", message: Any, target: int) -> bool:
        return _context.set_error(ErrorCode.SESSION_NOT_EXIST)

    def default_idle_time(self) -> float:
        return 0.0


class EventWorker:
    """One event worker. `run()` blocks until the worker stops and returns its exit code."""

    def __init__(self, server: Any, state: layout.SharedState, worker_id: int, wiring: WorkerWiring, driver: Any) -> None:
        self.server = server
        self.state = state
        self.worker_id = worker_id
        self.wiring = wiring
        self.driver = driver
        self.reactor = Reactor(f"worker-{worker_id}")
        self.generation = state.begin_generation(worker_id)
        self.counters = StatCounters(state, wiring.stat_slot(worker_id, self.generation))
        setting = server.setting
        self.runtime = Runtime(server, worker_id, self.counters, max_request=setting["max_request"], grace=setting.get("max_request_grace", 0), request_stop=self.request_stop)
        self.sink = InlineSink(self.runtime, worker_id)
        self.host = Host(server=server, state=state, reactor=self.reactor, reactor_id=worker_id, counters=self.counters, sink=self.sink)
        self.router = LocalRouter(server, state, driver, self.host, self.runtime, None, wiring.own_list_only)
        self.acceptor: Any = None
        self.datagram_readers: list[DatagramReader] = []
        self.stop_reason = ""
        self.exit_code = 0
        self._stopping = False
        self._finished = False  # the loop has ended (posted calls are drained afterwards)
        self._drain_deadline = 0.0
        self.reactor.periodic.append(self.counters.flush)

    # -- lifecycle --------------------------------------------------------------------------
    def bind_context(self) -> None:
        ctx = _context.current()
        ctx.server = self.server
        ctx.role = _context.ROLE_WORKER
        ctx.worker_id = self.worker_id
        ctx.worker_pid = os.getpid()
        ctx.worker_tid = threading.get_native_id() if self.wiring.role_thread else None
        ctx.loop = self.reactor
        ctx.router = self.router
        ctx.runtime = self.runtime
        ctx.worker_obj = self

    def run(self) -> int:
        self.bind_context()
        self.router.forwarder = self.wiring.forwarder(self)
        state = self.state
        state.set_worker_field(self.worker_id, layout.W_PID, os.getpid())
        state.set_worker_field(self.worker_id, layout.W_TID, threading.get_native_id())
        state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_IDLE)
        self.wiring.attach(self)
        interval = self.server.setting.get("heartbeat_check_interval")
        if interval:
            self.host.start_heartbeat(interval, self.wiring.default_idle_time())
        self.runtime.start()
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
            self.counters.flush()
        return self.exit_code

    def adopt_handoff(self, sock: Any, session: int, port: Any, remote: Any) -> None:
        """THREAD mode: a connection the master accepted for us (runs on our thread)."""
        if self._stopping or self._finished:
            self.host.refuse(sock, session)  # we are leaving: refuse it cleanly
            return
        self.host.adopt(sock, session, port, remote)

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
        self.wiring.stopping(self, wait_event)
        if self.acceptor is not None:
            self.acceptor.stop()
        for reader in self.datagram_readers:
            reader.stop()
        if wait_event:
            # stop(-1, True): keep serving what is already here until the loop is empty
            # (no connections, no timers) or max_wait_time passes, then leave.
            self.state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_EXIT)
            self._drain_deadline = time.monotonic() + self.server.setting["max_wait_time"]
            self.reactor.after(DRAIN_CHECK_MS, self._check_drained)
            return
        self._leave(graceful=True)

    def _check_drained(self) -> None:
        if self.server.setting.get("reload_async"):
            self.runtime.call("worker_exit", self.server._callbacks.lookup("worker_exit"), self.server, self.worker_id)
        idle = not self.host.conns and self.reactor.user_timer_count() == 0
        if idle or time.monotonic() >= self._drain_deadline:
            self._leave(graceful=True)
        else:
            self.reactor.after(DRAIN_CHECK_MS, self._check_drained)

    def _leave(self, graceful: bool) -> None:
        self.reactor.timers.clear_all()
        self.host.close_all()
        self.runtime.stop()
        deadline = time.monotonic() + (self.server.setting["max_wait_time"] if graceful else 0.0)
        self.host.drain(deadline)
        self.reactor.stop()

    # -- messages from other workers or the owner of a session ------------------------------
    def handle_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        host = self.host
        if type_ == messages.T_PIPE_MESSAGE:
            callback = self.server._callbacks.lookup("pipe_message")
            self.runtime.call("pipe_message", callback, self.server, src, pickle.loads(payload))
            return
        conn = host.conns.get(session)
        if conn is None:
            return  # closed meanwhile: the operation is dropped, like Swoole's "session does not exist"
        host.apply(conn, type_, payload, src)

    # -- datagrams --------------------------------------------------------------------------
    def listen_datagrams(self, exclusive: bool) -> None:
        for port in self.server.ports:
            if not port.is_stream:
                self.datagram_readers.append(DatagramReader(self.reactor, port, self.deliver_packet, self.counters, exclusive))

    def deliver_packet(self, port: Any, data: bytes, client_info: dict) -> None:
        self.runtime.count_request()
        self.runtime.call("packet", port.on_packet, self.server, data, client_info)
        self.runtime.check_max_request()


def check_message_target(server: Any, worker_id: int) -> None:
    if isinstance(worker_id, bool) or not isinstance(worker_id, int):
        raise TypeError("worker_id must be an int")
    total = server.setting["worker_num"] + server.setting.get("task_worker_num", 0)
    if not 0 <= worker_id < total:
        raise ValueError(f"worker_id must be in [0, {total}), got {worker_id}")
    if server._callbacks.lookup("pipe_message") is None:
        raise StateError("send_message() needs a 'pipe_message' callback registered before start()")


Callback = Callable[..., Any]
