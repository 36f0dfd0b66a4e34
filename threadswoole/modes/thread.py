"""SWOOLE_THREAD: one process; the master thread accepts, worker threads own the connections.

Each worker thread runs its own reactor and the callbacks inline (sharded event loops, like
swoole-src thread.cc): it is an EventWorker, the same class BASE mode forks, wired for
threads. The master thread accepts and hands each new socket to one worker thread's command
queue (dispatch_mode / dispatch_func decide which, once per connection). A manager thread
runs the same Supervisor as the other modes over ThreadWorkers; signals are received by the
master's main thread and posted to the right loop.

A worker id outlives its instances. While an instance stops and its replacement starts
(reload, max_request, stop()), nothing addressed to the id is lost: its connections are
detached (socket, codec and queue untouched) and handed to the replacement, sockets accepted
for it meanwhile wait for the replacement, and messages and forwarded operations sent to it
are queued until the replacement is ready. Swoole closes a restarted thread's connections; in
one process nothing forces that, so a THREAD reload drops nothing. All of it goes through one
lock (`_handover`), so it stays correct without a GIL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from threadswoole import _context
from threadswoole.connections.acceptor import Acceptor, Placement
from threadswoole.loop.held_io import held_io_functions
from threadswoole.loop.reactor import Reactor
from threadswoole.modes.common import DriverBase
from threadswoole.modes.thread_bodies import ThreadBodies
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.dispatch import EVENT_CONNECT, IDLE, Dispatcher
from threadswoole.workers.event_worker import EventWorker, WorkerWiring
from threadswoole.workers.roster import COMMAND_REPLIES, EVENT, TASK, USER, RunConfig
from threadswoole.workers.supervisor import Supervisor, bind_manager_context
from threadswoole.workers.worker import ThreadWorker

log = logging.getLogger("threadswoole")
START_TIMEOUT_MS = 5000


class ThreadDriver(ThreadBodies, DriverBase):
    spill_tasks = False  # contract §7: between threads the pickled bytes are passed as they are
    uses_deliver = True  # event worker threads have no mailbox: their command queue (deliver)

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        # Everything below that several threads touch is guarded by this one lock.
        self._handover = threading.Lock()
        self.ready: dict[int, EventWorker] = {}  # worker id -> the instance that takes work now
        self._waiting_messages: dict[int, list[tuple]] = {}  # for an id with no ready instance
        self._parked_connections: dict[int, list[Any]] = {}  # detached, for the next instance
        self._parked_sockets: dict[int, list[tuple]] = {}  # accepted while the id restarted
        self._instances: dict[ThreadWorker, EventWorker] = {}
        self.main_reactor: Reactor | None = None
        self.manager_reactor: Reactor | None = None
        self.supervisor: Supervisor | None = None
        self.acceptor: Acceptor | None = None
        self.dispatcher: Dispatcher | None = None
        self._manager_thread: threading.Thread | None = None
        self._listening = False
        self._started_ids: set[int] = set()
        self.shutting_down = False

    def run(self) -> bool:
        self.begin()
        state = self.create_state(acceptors=1, capacity=self.capacity())
        roster = self.roster
        # task workers, user processes, reply boxes, the shared queue, command replies (sockets)
        self.create_mailboxes([*roster.ids(TASK), *roster.ids(USER), *roster.task_mailbox_ids(), COMMAND_REPLIES])
        server = self.server
        server.manager_pid = os.getpid()  # the manager is a thread of the master (contract §16)
        state.q[layout.H_MANAGER_PID] = os.getpid()
        main = self.main_reactor = Reactor("master")
        manager = self.manager_reactor = Reactor("manager")
        self.dispatcher = Dispatcher(server, self.settings, state, self.worker_num)
        self.supervisor = Supervisor(self.config, state, manager, self._make_worker)
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
            # The manager thread starts the workers before on_start runs (in Swoole they start
            # concurrently), so a command() in on_start finds them reading their messages.
            self._manager_thread = threading.Thread(target=self._manager_main, name="manager", daemon=True)
            self._manager_thread.start()
            self.bind_master_context(main)
            self.fire("start")
            main.after(START_TIMEOUT_MS, self._listen)
            main.run()
            if self._manager_thread is not None:
                self._manager_thread.join(self.settings["max_wait_time"] * 2 + 5)
            self._close_parked(counters)
            counters.flush()
            counters.release()
            return True
        finally:
            main.close()
            self.close_mailboxes()
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

    def _make_worker(self, role: str, worker_id: int) -> ThreadWorker:
        def stop(wait_event: bool) -> None:
            with self._handover:
                worker = self._instances.get(thread_worker)
            if worker is None:
                return
            if role == EVENT:
                worker.stop_from_any_thread("stop", wait_event)
            elif role == TASK:
                worker.stop_soon("stop", wait_event)
            else:
                self.stop_user_thread(thread_worker, worker)

        def on_exit(ended: ThreadWorker) -> None:
            assert self.manager_reactor is not None and self.supervisor is not None
            self.manager_reactor.post(self.supervisor.worker_exited, ended)

        body = {EVENT: self._worker_main, TASK: self._task_main, USER: self._user_main}[role]
        thread_worker = ThreadWorker(worker_id, role, body, on_exit, stop=stop, name=f"{role}-{worker_id}" if role != EVENT else f"worker-{worker_id}")
        return thread_worker

    def run_thread_body(self, thread_worker: ThreadWorker, body: Any) -> int:
        """Run a task worker's or user process's body in this thread (modes/thread_bodies.py)."""
        with self._handover:
            self._instances[thread_worker] = body
        try:
            return 0 if thread_worker.stopping else body.run()
        finally:
            with self._handover:
                self._instances.pop(thread_worker, None)
            body.counters.release()
            body.reactor.close()
            _context.current().reset()

    def _worker_main(self, thread_worker: ThreadWorker) -> int:
        """Body of a worker thread: an EventWorker whose identity is thread-local."""
        assert self.state is not None
        worker = EventWorker(self.config, self.state, thread_worker.worker_id, ThreadWiring(self), self)
        with self._handover:
            self._instances[thread_worker] = worker
        try:
            # Asked to stop before it ran (a shutdown racing a respawn): still release its
            # counters view below, or the segment cannot be closed at shutdown.
            return 0 if thread_worker.stopping else worker.run()
        finally:
            self.withdraw(worker)
            worker.reactor.drain_posted()  # what raced with our exit is rerouted or refused
            with self._handover:
                self._instances.pop(thread_worker, None)
            worker.counters.release()
            worker.reactor.close()
            _context.current().reset()

    # -- the hand-over of a worker id between its instances ----------------------------------
    def enlist(self, worker: EventWorker) -> None:
        """On the worker's thread, once it can take work: what waited for its id is its now."""
        worker_id = worker.worker_id
        with self._handover:
            self.ready[worker_id] = worker
            moved = self._parked_connections.pop(worker_id, [])
            sockets = self._parked_sockets.pop(worker_id, [])
            waiting = self._waiting_messages.pop(worker_id, [])
        worker.adopt_moved(moved)
        for handed in sockets:
            worker.adopt_socket(*handed)
        for message in waiting:
            worker.reactor.post(worker.handle_message, *message)

    def withdraw(self, worker: EventWorker) -> None:
        """The instance stops taking work; what comes for its id now waits for the next one."""
        with self._handover:
            if self.ready.get(worker.worker_id) is worker:
                del self.ready[worker.worker_id]

    def hand_over(self, worker: EventWorker, connections: list[Any]) -> None:
        """Connections detached by a leaving instance: to the ready successor, or parked."""
        if not connections:
            return
        with self._handover:
            successor = self.ready.get(worker.worker_id)
            if successor is None or successor is worker:
                self._parked_connections.setdefault(worker.worker_id, []).extend(connections)
                return
        successor.reactor.post(successor.adopt_moved, connections)

    def deliver(self, worker_id: int, message: tuple) -> bool:
        """A message or forwarded operation for a worker id: posted to its ready instance, or
        kept until one is ready (a worker starting or restarting loses nothing)."""
        with self._handover:
            target = self.ready.get(worker_id)
            if target is None:
                if self.shutting_down:
                    return _context.set_error(1005)
                self._waiting_messages.setdefault(worker_id, []).append(message)
                return True
        target.reactor.post(target.handle_message, *message)
        return True

    def park_socket(self, worker_id: int, handed: tuple) -> bool:
        """A socket for a worker id with no ready instance: kept for the next one. False when
        the server is shutting down (the caller refuses it)."""
        with self._handover:
            if self.shutting_down:
                return False
            target = self.ready.get(worker_id)
            if target is None:
                self._parked_sockets.setdefault(worker_id, []).append(handed)
                return True
        target.reactor.post(target.adopt_socket, *handed)
        return True

    def _close_parked(self, counters: StatCounters) -> None:
        """At shutdown: connections and sockets that never reached a new instance are closed."""
        assert self.state is not None
        with self._handover:
            connections = [c for conns in self._parked_connections.values() for c in conns]
            sockets = [s for socks in self._parked_sockets.values() for s in socks]
            self._parked_connections.clear()
            self._parked_sockets.clear()
        for conn in connections:
            conn.discard_output()
            self.retire_socket(counters, conn.sock, conn.session_id)
        for sock, session, _port, _remote in sockets:
            self.retire_socket(counters, sock, session)

    def retire_socket(self, counters: StatCounters, sock: Any, session: int) -> None:
        """Close a socket no worker will take, and retire its shared record (shutdown)."""
        assert self.state is not None
        try:
            sock.close()
        except OSError:
            pass
        self.state.q[self.state.record_base(session) + layout.C_SESSION] = -session
        counters.close += 1

    # -- accepting --------------------------------------------------------------------------
    def worker_started(self, worker: EventWorker) -> None:
        """On the master thread: listen once every worker thread can take connections, so the
        first connections are spread as dispatch_mode says (or after 5 s, whatever started)."""
        self._started_ids.add(worker.worker_id)
        if len(self._started_ids) >= self.worker_num:
            self._listen()

    def _listen(self) -> None:
        if not self._listening and not self.shutting_down:
            assert self.acceptor is not None
            self._listening = True
            self.acceptor.listen(self.config.ports)

    def _choose(self, session: int, remote: Any) -> int:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        if dispatcher.func is None and dispatcher.mode == IDLE:
            # Per connection, "idle" means the worker holding the fewest connections.
            with self._handover:
                ready = list(self.ready.items())
            if ready:
                return min(ready, key=lambda item: len(item[1].host.conns))[0]
        ip = remote[0] if isinstance(remote, tuple) else ""
        return dispatcher.worker_for(session, ip, 0, EVENT_CONNECT)

    def _place(self, session: int, sock: Any, port: Any, remote: Any) -> Placement:
        worker_id = self._choose(session, remote)
        return Placement(worker_id, worker_id, _WorkerIdReceiver(self, worker_id))

    # -- shutdown and requests --------------------------------------------------------------
    def begin_shutdown(self) -> None:
        if self.shutting_down:
            return
        with self._handover:
            self.shutting_down = True
        assert self.acceptor is not None and self.manager_reactor is not None and self.supervisor is not None
        self.acceptor.stop()
        supervisor, manager = self.supervisor, self.manager_reactor
        manager.post(supervisor.shutdown, manager.stop)

    def request_reload(self, only_task: bool) -> bool:
        assert self.state is not None and self.manager_reactor is not None and self.supervisor is not None
        if self.state.q[layout.H_RELOADING] or self.shutting_down:
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
        if worker_id < 0 or (ctx.role in (_context.ROLE_WORKER, _context.ROLE_TASK) and worker_id == ctx.worker_id):
            worker = ctx.worker_obj
            if ctx.role not in (_context.ROLE_WORKER, _context.ROLE_TASK) or worker is None:
                return False
            worker.request_stop("stop", wait_event)
            return True
        if not 0 <= worker_id < self.worker_num + self.task_num:
            return False
        assert self.manager_reactor is not None and self.supervisor is not None
        self.manager_reactor.post(self.supervisor.stop_worker, worker_id, wait_event)
        return True

class _WorkerIdReceiver:
    """The acceptor's receiver for a THREAD connection: the ready instance of a worker id, or
    the parking place until its replacement is ready."""

    __slots__ = ("driver", "worker_id")

    def __init__(self, driver: ThreadDriver, worker_id: int) -> None:
        self.driver = driver
        self.worker_id = worker_id

    def take_connection(self, sock: Any, session: int, port: Any, remote: Any) -> None:
        if not self.driver.park_socket(self.worker_id, (sock, session, port, remote)):
            acceptor = self.driver.acceptor
            assert acceptor is not None
            self.driver.retire_socket(acceptor.counters, sock, session)  # shutting down


class ThreadWiring(WorkerWiring):
    """A worker thread: sockets arrive from the master; other threads reach it via its queue."""

    role_thread = True
    own_list_only = False  # THREAD: get_client_list and connections show every connection

    def __init__(self, driver: ThreadDriver) -> None:
        self.driver = driver

    def carrier(self) -> "ThreadWiring":
        return self

    def socket_io(self) -> tuple[Any, Any] | None:
        """With a GIL and more than one loop thread, reads and writes that keep the GIL
        (loop/held_io.py: a release for a syscall that cannot wait hands the GIL to
        another worker thread; docs/serve.md, "Where THREAD mode loses")."""
        driver = self.driver
        if driver.worker_num + driver.task_num <= 1:
            return None
        return held_io_functions()

    def carry(self, owner_worker: int, op: int, session: int, payload: bytes) -> bool:
        return self.driver.deliver(owner_worker, (op, 0, 0, 0, _context.current().worker_id, session, payload))

    def attach(self, worker: EventWorker) -> None:
        if worker.host.read_fd is not os.read:  # (socket_io above chose the held pair)
            worker.reactor.keep_gil_for_ready_polls()
        worker.listen_datagrams(exclusive=True)
        self.driver.enlist(worker)

    def started(self, worker: EventWorker) -> None:
        driver = self.driver
        assert driver.manager_reactor is not None and driver.supervisor is not None and driver.main_reactor is not None
        driver.manager_reactor.post(driver.supervisor.worker_started, worker.worker_id)
        driver.main_reactor.post(driver.worker_started, worker)

    def stopping(self, worker: EventWorker, wait_event: bool) -> None:
        driver = self.driver
        driver.withdraw(worker)
        if wait_event:
            assert driver.manager_reactor is not None and driver.supervisor is not None
            driver.manager_reactor.post(driver.supervisor.worker_stopping, worker.worker_id, True)

    def keeps_connections(self, worker: EventWorker) -> bool:
        return not self.driver.shutting_down and worker.stop_reason != "orphaned"

    def hand_over(self, worker: EventWorker, connections: list[Any]) -> None:
        self.driver.hand_over(worker, connections)

    def reroute(self, worker: EventWorker, message: tuple) -> bool:
        """A message that reached this instance after it withdrew: to its successor."""
        if self.driver.shutting_down:
            return False
        return self.driver.deliver(worker.worker_id, message)

    def reroute_socket(self, worker: EventWorker, handed: tuple) -> bool:
        return self.driver.park_socket(worker.worker_id, handed)

    def default_idle_time(self) -> float:
        return self.driver.default_idle_time()
