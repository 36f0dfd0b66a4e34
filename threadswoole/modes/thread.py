"""SWOOLE_THREAD: one process; the master thread accepts, worker threads own the connections.

Each worker thread runs its own reactor and the callbacks inline (sharded event loops, like
swoole-src thread.cc): it is an EventWorker, the same class BASE mode forks, wired for
threads. The master thread accepts and hands each new socket to one worker thread's command
queue (dispatch_mode / dispatch_func decide which, once per connection). A manager thread
runs the same Supervisor as the other modes over ThreadWorkers; signals are received by the
master's main thread and posted to the right loop. Everything that crosses threads either
goes through the owning thread's queue (connection operations, pipe messages, hand-offs) or
reads shared memory laid out for concurrent readers, so it stays correct without a GIL.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
from typing import Any

from threadswoole import _context
from threadswoole.ipc import messages
from threadswoole.state import shared as layout
from threadswoole.connections.acceptor import Acceptor
from threadswoole.state.counters import StatCounters
from threadswoole.workers.dispatch import EVENT_CONNECT, IDLE, Dispatcher
from threadswoole.workers.event_worker import EventWorker, WorkerWiring, check_message_target
from threadswoole.modes.common import DriverBase
from threadswoole.loop.reactor import Reactor
from threadswoole.workers.supervisor import Supervisor, bind_manager_context
from threadswoole.workers.worker import EVENT, ThreadWorker

log = logging.getLogger("threadswoole")
START_TIMEOUT_MS = 5000


class ThreadDriver(DriverBase):
    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.workers: dict[int, EventWorker] = {}  # the current instance of each worker id
        # Ids whose current instance takes new connections. Worker threads add and remove
        # ids while the master thread reads them: a frozenset swapped under a lock, so a
        # reader always iterates one consistent snapshot (a plain set would raise "changed
        # size during iteration", and on a free-threaded build the update could be lost).
        self.accepting: frozenset[int] = frozenset()
        self._accepting_lock = threading.Lock()
        self.main_reactor: Reactor | None = None
        self.manager_reactor: Reactor | None = None
        self.supervisor: Supervisor | None = None
        self.acceptor: Acceptor | None = None
        self.dispatcher: Dispatcher | None = None
        self._manager_thread: threading.Thread | None = None
        self._listening = False
        self._started_ids: set[int] = set()
        self._shutting_down = False

    def run(self) -> bool:
        self.begin()
        workers = self.worker_num
        state = self.create_state(stat_slots=1 + 2 * workers, worker_slots=workers, acceptors=1, capacity=self.capacity())
        server = self.server
        server.manager_pid = os.getpid()  # the manager is a thread of the master (contract §16)
        state.q[layout.H_MANAGER_PID] = os.getpid()
        main = self.main_reactor = Reactor("master")
        manager = self.manager_reactor = Reactor("manager")
        self.dispatcher = Dispatcher(server, state, workers)
        self.supervisor = Supervisor(server, state, manager, self._make_worker, event_ids=list(range(workers)), task_ids=[])
        counters = StatCounters(state, 0)
        main.periodic.append(counters.flush)
        self.acceptor = Acceptor(state, 0, main, counters, max_connection=self.capacity(), live_count=lambda: self._live_count(counters), place=self._place)
        try:
            self.install_signals(
                {
                    signal.SIGTERM: self.begin_shutdown,
                    signal.SIGINT: self.begin_shutdown,
                    signal.SIGUSR1: lambda: self.request_reload(False),
                    signal.SIGUSR2: lambda: self.request_reload(True),
                },
                main.post,
            )
            self.bind_master_context(main)
            self.fire("start")
            self._manager_thread = threading.Thread(target=self._manager_main, name="manager", daemon=True)
            self._manager_thread.start()
            main.after(START_TIMEOUT_MS, self._listen)
            main.run()
            counters.flush()
            counters.release()
            return True
        finally:
            if self._manager_thread is not None:
                self._manager_thread.join(self.server.setting["max_wait_time"] * 2 + 5)
            main.close()
            self.finish()

    def _live_count(self, counters: StatCounters) -> int:
        state = self.state
        assert state is not None
        closed = sum(state.q[state.stat_base(slot) + layout.S_CLOSE] for slot in range(1, state.stat_slots))
        return counters.accept - counters.close - closed

    # -- the manager thread ----------------------------------------------------------------
    def _manager_main(self) -> None:
        reactor, supervisor = self.manager_reactor, self.supervisor
        assert reactor is not None and supervisor is not None
        bind_manager_context(self.server, reactor)
        self.fire("manager_start")
        supervisor.start_all()
        try:
            reactor.run()
        finally:
            self.fire("manager_stop")
            reactor.close()
            assert self.main_reactor is not None
            self.main_reactor.post(self.main_reactor.stop)

    def _make_worker(self, worker_id: int) -> ThreadWorker:
        holder: dict[str, ThreadWorker] = {}

        def stop(wait_event: bool) -> None:
            worker = getattr(holder["thread"], "event_worker", None)
            if worker is not None:
                worker.stop_from_any_thread("stop", wait_event)

        def on_exit(thread_worker: ThreadWorker) -> None:
            assert self.manager_reactor is not None and self.supervisor is not None
            self.manager_reactor.post(self.supervisor.worker_exited, thread_worker)

        thread_worker = ThreadWorker(worker_id, EVENT, self._worker_main, on_exit, stop=stop, name=f"worker-{worker_id}")
        holder["thread"] = thread_worker
        return thread_worker

    def _worker_main(self, thread_worker: ThreadWorker) -> int:
        """Body of a worker thread: an EventWorker whose identity is thread-local."""
        assert self.state is not None
        worker = EventWorker(self.server, self.state, thread_worker.worker_id, ThreadWiring(self), self)
        thread_worker.event_worker = worker  # type: ignore[attr-defined]
        self.workers[worker.worker_id] = worker
        try:
            # Asked to stop before it ran (a shutdown racing a respawn): still release its
            # counters view below, or the segment cannot be closed at shutdown.
            return 0 if thread_worker.stopping else worker.run()
        finally:
            if self.workers.get(worker.worker_id) is worker:
                self.set_accepting(worker.worker_id, False)
            worker.reactor.drain_posted()  # refuse hand-offs that raced with our exit
            worker.counters.release()
            worker.reactor.close()
            _context.current().reset()

    # -- accepting --------------------------------------------------------------------------
    def set_accepting(self, worker_id: int, accepting: bool) -> None:
        with self._accepting_lock:
            self.accepting = self.accepting | {worker_id} if accepting else self.accepting - {worker_id}

    def worker_started(self, worker: EventWorker) -> None:
        """On the master thread: listen once every worker thread can take connections, so the
        first connections are spread as dispatch_mode says (or after 5 s, whatever started)."""
        self._started_ids.add(worker.worker_id)
        if len(self._started_ids) >= self.worker_num:
            self._listen()

    def _listen(self) -> None:
        if not self._listening and not self._shutting_down:
            assert self.acceptor is not None
            self._listening = True
            self.acceptor.listen(self.server.ports)

    def _choose(self, session: int, remote: Any) -> int:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        if dispatcher.func is None and dispatcher.mode == IDLE:
            # Per connection, "idle" means the worker holding the fewest connections.
            candidates = [w for w in self.accepting if w in self.workers]  # a snapshot
            if candidates:
                return min(candidates, key=lambda w: len(self.workers[w].host.conns))
        ip = remote[0] if isinstance(remote, tuple) else ""
        return dispatcher.worker_for(session, ip, 0, EVENT_CONNECT)

    def _place(self, session: int, sock: Any, port: Any, remote: Any) -> tuple[int, int, Any]:
        worker_id = self._choose(session, remote)
        accepting = self.accepting  # one snapshot for this decision
        if worker_id not in accepting:
            ready = sorted(accepting)
            if not ready:
                raise RuntimeError("no worker thread is accepting connections")
            worker_id = ready[session % len(ready)]  # its worker is restarting: pick another
        worker = self.workers[worker_id]
        return worker_id, worker_id, lambda *args: worker.reactor.post(worker.adopt_handoff, *args)

    # -- shutdown and requests --------------------------------------------------------------
    def begin_shutdown(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        assert self.acceptor is not None and self.manager_reactor is not None and self.supervisor is not None
        self.acceptor.stop()
        supervisor, manager = self.supervisor, self.manager_reactor
        manager.post(supervisor.shutdown, manager.stop)

    def request_reload(self, only_task: bool) -> bool:
        assert self.state is not None and self.manager_reactor is not None and self.supervisor is not None
        if self.state.q[layout.H_RELOADING] or self._shutting_down:
            return False
        if only_task and not self.task_num:
            return True
        self.state.q[layout.H_RELOADING] = 1
        self.manager_reactor.post(self.supervisor.reload, only_task)
        return True

    def request_shutdown(self) -> bool:
        assert self.main_reactor is not None
        self.main_reactor.post(self.begin_shutdown)
        return True

    def request_stop(self, worker_id: int, wait_event: bool) -> bool:
        ctx = _context.current()
        if worker_id < 0 or (ctx.role == _context.ROLE_WORKER and worker_id == ctx.worker_id):
            worker = ctx.worker_obj
            if ctx.role != _context.ROLE_WORKER or worker is None:
                return False
            worker.request_stop("stop", wait_event)
            return True
        if not 0 <= worker_id < self.worker_num:
            return False
        assert self.manager_reactor is not None and self.supervisor is not None
        self.manager_reactor.post(self.supervisor.stop_worker, worker_id, wait_event)
        return True

    def send_message(self, message: Any, worker_id: int) -> bool:
        check_message_target(self.server, worker_id)
        target = self.workers.get(worker_id)
        if target is None:
            return _context.set_error(1005)
        # A pickled copy in every mode (contract R4): threads must not share the object.
        target.reactor.post(target.handle_message, messages.T_PIPE_MESSAGE, 0, 0, 0, _context.current().worker_id, 0, pickle.dumps(message))
        return True


class ThreadWiring(WorkerWiring):
    """A worker thread: sockets arrive from the master; other threads reach it via its queue."""

    role_thread = True
    own_list_only = False  # THREAD: get_client_list and connections show every connection

    def __init__(self, driver: ThreadDriver) -> None:
        self.driver = driver

    def attach(self, worker: EventWorker) -> None:
        worker.listen_datagrams(exclusive=True)
        self.driver.set_accepting(worker.worker_id, True)

    def forwarder(self, worker: EventWorker) -> Any:
        return self

    def forward(self, owner_worker: int, op: int, session: int, payload: bytes) -> bool:
        owner = self.driver.workers.get(owner_worker)
        if owner is None:
            return _context.set_error(1005)
        owner.reactor.post(owner.handle_message, op, 0, 0, 0, _context.current().worker_id, session, payload)
        return True

    def started(self, worker: EventWorker) -> None:
        driver = self.driver
        assert driver.manager_reactor is not None and driver.supervisor is not None and driver.main_reactor is not None
        driver.manager_reactor.post(driver.supervisor.worker_started, worker.worker_id)
        driver.main_reactor.post(driver.worker_started, worker)

    def stopping(self, worker: EventWorker, wait_event: bool) -> None:
        driver = self.driver
        if driver.workers.get(worker.worker_id) is worker:
            driver.set_accepting(worker.worker_id, False)
        if wait_event:
            assert driver.manager_reactor is not None and driver.supervisor is not None
            driver.manager_reactor.post(driver.supervisor.worker_stopping, worker.worker_id, True)

    def default_idle_time(self) -> float:
        return self.driver.default_idle_time()
