"""SWOOLE_BASE: every worker accepts on the listening sockets and runs callbacks inline.

worker_num = 1 (and no max_request): one process, no fork, the master is the worker.
Otherwise the master process is also the manager (single-threaded, it forks every worker):
each worker process runs its own reactor on the inherited listening socket (EPOLLEXCLUSIVE,
so a new connection wakes one worker) or on its own SO_REUSEPORT socket. Connections live
in the worker that accepted them, so a worker restart closes them (Swoole BASE).
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import signal
import time
from typing import Any, Callable

from threadswoole import _context
from threadswoole.connections.acceptor import Acceptor, Placement
from threadswoole.ipc import messages
from threadswoole.ipc.mailbox import MailboxLink
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.modes.common import DriverBase
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.child import child_signals, drop_privileges, watch_parent
from threadswoole.workers.event_worker import EventWorker, WorkerWiring, check_message_target
from threadswoole.workers.roster import COMMAND_REPLIES, MANAGER, RunConfig
from threadswoole.workers.supervisor import Supervisor, bind_manager_context
from threadswoole.workers.worker import ProcessReaper, ProcessWorker

log = logging.getLogger("threadswoole")
_CHILD_ROLES = (_context.ROLE_WORKER, _context.ROLE_TASK, _context.ROLE_USER)  # forked by the manager


class BaseDriver(DriverBase):
    manager_inline = True  # the master process runs the manager loop (commands run in place)

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        # Contract §18.3: max_request, task workers or user processes with one worker need
        # someone to restart them: a manager.
        self.managed = self.worker_num > 1 or config.settings["max_request"] > 0 or config.roster.total > 1
        self.worker: EventWorker | None = None
        self.supervisor: Supervisor | None = None
        self.manager_reactor: Reactor | None = None
        self._restart = False
        self._shutdown = False
        self._signals: collections.deque[Callable[[], Any]] = collections.deque()  # one process: see _signalled
        self.reaper = ProcessReaper()

    def run(self) -> bool:
        self.begin()
        workers = self.worker_num
        try:
            self.create_state(acceptors=workers, capacity=workers * self.capacity())
            return self._run_managed() if self.managed else self._run_single()
        finally:
            self.close_mailboxes()
            self.finish()

    # -- one process ----------------------------------------------------------------------
    def _run_single(self) -> bool:
        assert self.state is not None
        self.server.manager_pid = 0
        wiring = SingleWiring(self)
        self.install_signals({signal.SIGTERM: self.request_shutdown, signal.SIGINT: self.request_shutdown, signal.SIGUSR1: self._reload_all}, self._signalled)
        first = True
        while True:
            self._restart = False
            worker = EventWorker(self.config, self.state, 0, wiring, self)
            self.worker = worker
            if self._signals:  # handled while no instance could take them (see _signalled)
                worker.reactor.post(self._run_signals)
            if first:
                self.bind_master_context(worker.reactor)
                self.fire("start")
                first = False
            worker.run()
            worker.counters.release()
            worker.reactor.close()
            self._run_signals()  # a SIGTERM posted to the loop that just ended is a shutdown still
            if self._shutdown or not self._restart:
                if not self._shutdown and worker.stop_reason == "exit":
                    continue  # SystemExit in a callback: the worker restarts, like a respawn
                break
            self.state.q[layout.H_RELOADING] = 0
        return True

    def _signalled(self, method: Any) -> None:
        """A signal handler of the one-process server (main thread, between bytecodes). The
        worker instance changes on every reload, so the request is kept here and the current
        instance's loop is told to run it; one that lands while an instance stops (its loop
        ends without running what was posted) or before the next exists is run between the
        two instead (it was lost: a SIGTERM then never stopped the server)."""
        self._signals.append(method)
        worker = self.worker
        if worker is not None:
            worker.reactor.post(self._run_signals)

    def _run_signals(self) -> None:
        while self._signals:
            self._signals.popleft()()

    def _reload_all(self) -> None:
        self.request_reload(False)

    # -- manager + worker processes --------------------------------------------------------
    def _run_managed(self) -> bool:
        assert self.state is not None
        server = self.server
        self.create_mailboxes([*self.roster.mailbox_ids(), COMMAND_REPLIES])
        reactor = Reactor("manager")
        self.manager_reactor = reactor
        server.manager_pid = os.getpid()
        self.state.q[layout.H_MANAGER_PID] = os.getpid()
        self.manager_counters = StatCounters(self.state, 0)
        reactor.periodic.append(self.manager_counters.flush)
        supervisor = Supervisor(self.config, self.state, reactor, self._make_worker, on_exit=self._retire_sessions)
        self.supervisor = supervisor
        inbox = messages.Inbox(self.inboxes[MANAGER], self._manager_message)
        reactor.add(inbox.fd, EPOLLIN, inbox.on_readable)
        self.install_signals(
            {
                signal.SIGTERM: self._shutdown_all,
                signal.SIGINT: self._shutdown_all,
                signal.SIGUSR1: lambda: supervisor.reload(False),
                signal.SIGUSR2: lambda: log.warning("SWOOLE_BASE cannot reload only task workers; SIGUSR2 ignored"),
                signal.SIGCHLD: self._reap,
            },
            reactor.post,
        )
        # The workers are forked before on_start runs (in Swoole they start concurrently), so
        # a command() or a one-way task in on_start finds them reading their mailboxes.
        bind_manager_context(server, reactor)
        supervisor.start_all()
        self.bind_master_context(reactor)
        self.fire("start")
        bind_manager_context(server, reactor)
        self.fire("manager_start")
        reactor.run()
        self.fire("manager_stop")
        reactor.close()
        self.manager_counters.flush()
        self.manager_counters.release()  # no view may outlive the segment (it is unlinked next)
        return True

    def _reap(self) -> None:
        assert self.supervisor is not None
        for worker in self.reaper.reap():
            self.supervisor.worker_exited(worker)

    def _retire_sessions(self, worker: Any) -> None:
        """A BASE worker is gone: its sockets died with it (the kernel closed them), but a
        worker killed -9 could not retire their shared records. Do it here, once it is dead
        (so there is no other writer): only records that process held, since a replacement
        with the same worker id may already be accepting."""
        state = self.state
        assert state is not None
        q = state.q
        retired = 0
        for session in state.live_sessions(acceptor=worker.worker_id):
            base = state.record_base(session)
            if q[base + layout.C_OWNER_PID] == worker.pid and q[base + layout.C_SESSION] == session:
                q[base + layout.C_SESSION] = -session
                retired += 1
        if retired:
            self.manager_counters.close += retired
            self.manager_counters.publish_close()
            log.warning("worker %d (pid %d) died holding %d connections; they are closed", worker.worker_id, worker.pid, retired)

    def _shutdown_all(self) -> None:
        assert self.supervisor is not None and self.manager_reactor is not None
        self._shutdown = True
        self.supervisor.shutdown(self.manager_reactor.stop)

    def _manager_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        assert self.supervisor is not None
        if type_ == messages.T_SHUTDOWN:
            self._shutdown_all()
        else:
            self.supervisor.handle_message(type_, src, session, payload)

    def _make_worker(self, role: str, worker_id: int) -> ProcessWorker:
        child = self.child_worker(role, worker_id)  # task worker or user process
        if child is not None:
            return child

        worker = ProcessWorker(worker_id, role, lambda: self._worker_body(worker_id), self.reaper, stop_message=lambda wait_event: self.post_stop(worker, worker_id, wait_event))
        return worker

    def _worker_body(self, worker_id: int) -> int:
        """Runs in the forked child."""
        assert self.state is not None and self.manager_reactor is not None
        self.manager_reactor.close_after_fork()
        self.keep_inboxes(self.roster.inboxes_of(worker_id))
        _context.current().reset()
        self.restore_signals_after_fork()
        wiring = ProcessWiring(self, worker_id)
        worker = EventWorker(self.config, self.state, worker_id, wiring, self)
        self.worker = worker
        child_signals(lambda: worker.reactor.post(worker.request_stop, "shutdown"))
        drop_privileges(self.settings)
        return worker.run()

    def restore_signals_after_fork(self) -> None:
        self._saved_signals.clear()

    # -- requests from routers ------------------------------------------------------------
    def request_reload(self, only_task: bool) -> bool:
        if only_task:
            return False  # SWOOLE_BASE cannot reload only task workers (seed 000/002)
        assert self.state is not None
        if self.state.q[layout.H_RELOADING]:
            return False
        self.state.q[layout.H_RELOADING] = 1
        ctx = _context.current()
        if not self.managed:
            self._restart = True
            assert self.worker is not None
            self.worker.reactor.post(self.worker.request_stop, "reload")
            return True
        if ctx.role in _CHILD_ROLES:
            return self._to_manager(messages.T_RELOAD)
        assert self.supervisor is not None
        self.state.q[layout.H_RELOADING] = 0
        return self.supervisor.reload(False)

    def request_shutdown(self) -> bool:
        self._shutdown = True
        ctx = _context.current()
        if not self.managed:
            assert self.worker is not None
            self.worker.reactor.post(self.worker.request_stop, "shutdown")
            return True
        if ctx.role in _CHILD_ROLES:
            return self._to_manager(messages.T_SHUTDOWN)
        assert self.manager_reactor is not None
        self.manager_reactor.post(self._shutdown_all)
        return True

    def request_stop(self, worker_id: int, wait_event: bool) -> bool:
        ctx = _context.current()
        if worker_id < 0 or worker_id == ctx.worker_id:
            worker = ctx.worker_obj
            if ctx.role not in (_context.ROLE_WORKER, _context.ROLE_TASK) or worker is None:
                return False
            if not self.managed:
                self._restart = True
            worker.request_stop("stop", wait_event)
            return True
        if not 0 <= worker_id < self.worker_num + self.task_num:
            return False
        if not self.managed:
            return False
        if ctx.role in _CHILD_ROLES:
            return self._to_manager(messages.T_STOP_WORKER, worker_id, b"\x01" if wait_event else b"")
        assert self.supervisor is not None
        return self.supervisor.stop_worker(worker_id, wait_event)

    def _to_manager(self, op: int, session: int = 0, payload: bytes = b"") -> bool:
        box = messages.Outbox(self.posts[MANAGER], _context.current().worker_id)
        box.put(op, session, payload)
        return box.flush_blocking(1.0)

    def send_message(self, message: Any, worker_id: int) -> bool:
        check_message_target(self.config, worker_id)
        worker = self.worker
        assert worker is not None
        data = pickle.dumps(message)
        if not self.managed:
            worker.reactor.post(worker.handle_message, messages.T_PIPE_MESSAGE, 0, 0, 0, _context.current().worker_id, 0, data)
            return True
        wiring = worker.wiring
        assert isinstance(wiring, ProcessWiring) and wiring.link is not None
        wiring.link.outbox(worker_id).put(messages.T_PIPE_MESSAGE, 0, data)
        return True


class SingleWiring(WorkerWiring):
    """The lone worker of a one-process BASE server."""

    def __init__(self, driver: BaseDriver) -> None:
        self.driver = driver

    def attach(self, worker: EventWorker) -> None:
        _attach_acceptor(self.driver, worker, exclusive=False)
        worker.listen_datagrams(exclusive=False)

    def default_idle_time(self) -> float:
        return self.driver.default_idle_time()


class ProcessWiring(WorkerWiring):
    """A BASE worker process: accepts itself, forwards to other workers through mailboxes."""

    def __init__(self, driver: BaseDriver, worker_id: int) -> None:
        self.driver = driver
        self.worker_id = worker_id
        self.link: MailboxLink | None = None
        self.inbox: messages.Inbox | None = None

    def attach(self, worker: EventWorker) -> None:
        driver = self.driver
        reuse_port = bool(driver.settings.get("enable_reuse_port"))
        if reuse_port and worker.worker_id > 0:
            for port in driver.config.ports:  # this worker process listens on its own sockets
                if port.is_tcp:
                    port.reopen(reuse_port=True)
        _attach_acceptor(driver, worker, exclusive=not reuse_port)
        worker.listen_datagrams(exclusive=True)
        self.link = MailboxLink(worker.reactor, worker.worker_id, driver.posts)
        inbox = self.inbox = messages.Inbox(driver.inboxes[worker.worker_id], lambda *message: self._message(worker, *message))
        worker.reactor.add(inbox.fd, EPOLLIN, inbox.on_readable)
        watch_parent(worker.reactor, lambda: worker.request_stop("orphaned"))

    def _message(self, worker: EventWorker, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        if type_ == messages.T_STOP_WORKER:
            worker.request_stop("stop", payload == b"\x01")
            return
        worker.handle_message(type_, flags, port, reactor, src, session, payload)

    def carrier(self) -> "ProcessWiring":
        return self

    def carry(self, owner_worker: int, op: int, session: int, payload: bytes) -> bool:
        assert self.link is not None
        self.link.outbox(owner_worker).put(op, session, payload)
        return True

    def _notify(self, op: int, payload: bytes = b"") -> None:
        assert self.link is not None
        box = self.link.outbox(MANAGER)
        box.put(op, 0, payload)
        box.flush_blocking(1.0)

    def started(self, worker: EventWorker) -> None:
        self._notify(messages.T_WORKER_STARTED)

    def stopping(self, worker: EventWorker, wait_event: bool) -> None:
        # Leave the mailbox at a message boundary, as a PROCESS worker does (a chunked message
        # half read is finished first): what follows is our successor's, which reads it.
        assert self.inbox is not None
        if wait_event:  # it keeps its connections a while: others' sends to them fail at the call
            worker.host.mark_owner_leaving()
        self.inbox.finish_messages(time.monotonic() + self.driver.settings["max_wait_time"])
        self.inbox.paused = True
        worker.reactor.remove(self.inbox.fd)
        self._notify(messages.T_WORKER_STOPPING, (b"\x01" if wait_event else b"\x00") + os.getpid().to_bytes(4, "big"))

    def flush_messages(self, worker: EventWorker, deadline: float) -> None:
        assert self.link is not None
        self.link.flush_until(deadline, f"worker {worker.worker_id} (leaving)")

    def default_idle_time(self) -> float:
        return self.driver.default_idle_time()


def _attach_acceptor(driver: BaseDriver, worker: EventWorker, *, exclusive: bool) -> None:
    assert driver.state is not None
    host = worker.host
    worker_id = worker.worker_id

    placement = Placement(worker_id, worker_id, host)  # every connection stays in this worker

    def place(session: int, sock: Any, port: Any, remote: Any) -> Placement:
        return placement

    acceptor = Acceptor(
        driver.state,
        worker_id,
        worker.reactor,
        worker.counters,
        max_connection=driver.capacity(),
        live_count=lambda: len(host.conns),
        place=place,
        exclusive=exclusive and driver.worker_num > 1,
    )
    acceptor.listen(driver.config.ports)
    worker.acceptor = acceptor
