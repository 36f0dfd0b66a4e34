"""SWOOLE_PROCESS: reactor threads in the master own the connections; a manager process forks
worker processes that run the callbacks; pipes carry events and replies between them.

Start order (ARCHITECTURE invariant 2): the master creates the shared state and every
mailbox, forks the manager while it is still single-threaded, and only then starts its
reactor threads and its accept loop. Only the (single-threaded) manager ever forks again.

Shutdown (SIGTERM or server.shutdown()): stop accepting; every reactor thread closes its
connections, which queues a close event for the workers; the manager is told to stop, and
it stops each worker with a message that arrives after those close events; when the manager
has exited the reactor threads stop, the listeners close and on_shutdown runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from threadswoole import _context
from threadswoole.connections.acceptor import Acceptor, Placement
from threadswoole.ipc import messages
from threadswoole.ipc.messages import reactor_mailbox
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.modes.common import DriverBase
from threadswoole.modes.reactor_thread import ReactorThread
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.child import MASTER_SIGNALS, child_signals, drop_privileges, forked_from, watch_parent
from threadswoole.errors import ErrorCode
from threadswoole.workers.commands import answer_command
from threadswoole.workers.roster import COMMAND_REPLIES, MANAGER, RunConfig
from threadswoole.workers.supervisor import Supervisor, bind_manager_context
from threadswoole.workers.worker import ProcessReaper, ProcessWorker

log = logging.getLogger("threadswoole")

class ProcessDriver(DriverBase):
    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.reactor_num: int = config.roster.reactor_num
        self.reactor_threads: list[ReactorThread] = []
        self.main_reactor: Reactor | None = None
        self.manager_reactor: Reactor | None = None
        self.supervisor: Supervisor | None = None
        self.acceptor: Acceptor | None = None
        self.worker: Any = None  # the PipeWorker, inside a worker process
        self.manager_pid = 0
        self.failed = False
        self._shutting_down = False
        self.reaper = ProcessReaper()  # used in the manager process, which forks the workers

    def datagram_ports(self, reactor_id: int) -> list[Any]:
        datagram = [port for port in self.config.ports if not port.is_stream]
        return [port for index, port in enumerate(datagram) if index % self.reactor_num == reactor_id]

    # -- master -----------------------------------------------------------------------------
    def run(self) -> bool:
        self.begin()
        reactors = self.reactor_num
        state = self.create_state(acceptors=1, capacity=self.capacity())
        self.create_mailboxes([*self.roster.mailbox_ids(), *(reactor_mailbox(r) for r in range(reactors)), COMMAND_REPLIES])
        # The master's signals stay blocked from before the fork until their handlers are set:
        # a worker may call shutdown() (a SIGTERM to the master) as soon as it starts, and a
        # SIGTERM with the default action still in place would kill the master outright. Held
        # blocked, it waits and is handled as a graceful shutdown once the loop runs.
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        try:
            self._fork_manager()
            for mailbox in self.roster.mailbox_ids():
                self.inboxes.pop(mailbox).close()  # the master reads its reactor mailboxes and command replies
            main = self.main_reactor = Reactor("master")
            # Threads start only now: every fork of this server happens in the manager.
            self.reactor_threads = [ReactorThread(self, r) for r in range(reactors)]
            for thread in self.reactor_threads:
                thread.start()
            counters = StatCounters(state, 0)
            main.periodic.append(counters.flush)
            self.acceptor = Acceptor(state, 0, main, counters, max_connection=self.capacity(), live_count=lambda: self._live_count(counters), place=self._place)
            self.acceptor.listen(self.config.ports)
            self.install_signals(
                {
                    signal.SIGTERM: self.begin_shutdown,
                    signal.SIGINT: self.begin_shutdown,
                    signal.SIGUSR1: lambda: self.request_reload(False),
                    signal.SIGUSR2: lambda: self.request_reload(True),
                    signal.SIGCHLD: self._reap_manager,
                },
                main.post,
            )
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            self.bind_master_context(main)
            self.fire("start")
            main.run()
            counters.flush()
            counters.release()
            return not self.failed
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            for thread in self.reactor_threads:
                thread.stop(timeout=5)
            if self.main_reactor is not None:
                self.main_reactor.close()
            self.close_mailboxes()
            self.finish()

    def _live_count(self, counters: StatCounters) -> int:
        state = self.state
        assert state is not None
        closed = sum(state.q[state.stat_base(self.roster.reactor_stat_slot(r)) + layout.S_CLOSE] for r in range(self.reactor_num))
        return counters.accept - counters.close - closed

    def _place(self, session: int, sock: Any, port: Any, remote: Any) -> Placement:
        thread = self.reactor_threads[sock.fileno() % self.reactor_num]
        return Placement(thread.reactor_id, -1, thread)

    def _fork_manager(self) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        master = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:
                forked_from(master)
                code = 1
                try:
                    code = self._manager_main()
                except BaseException:
                    log.exception("the manager process failed")
                finally:
                    logging.shutdown()
                    os._exit(code)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self.manager_pid = self.server.manager_pid = pid
        assert self.state is not None
        self.state.q[layout.H_MANAGER_PID] = pid

    def begin_shutdown(self) -> None:
        """On the master's main thread: close connections, stop the manager, then the loop."""
        if self._shutting_down:
            return
        self._shutting_down = True
        assert self.acceptor is not None and self.main_reactor is not None
        self.acceptor.stop()
        done = []
        # the workers get their close events, each thread waiting for busy ones up to max_wait_time
        deadline = time.monotonic() + self.settings["max_wait_time"]
        for thread in self.reactor_threads:
            event = threading.Event()
            thread.reactor.post(thread.close_everything, event, deadline)
            done.append(event)
        for event in done:
            event.wait(max(0.0, deadline - time.monotonic()) + 1.0)
        if self.manager_pid:
            try:
                os.kill(self.manager_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.main_reactor.after(int((self.settings["max_wait_time"] * 2 + 2) * 1000), self._kill_manager)
        else:
            self.main_reactor.stop()

    def _kill_manager(self) -> None:
        if self.manager_pid:
            log.error("the manager did not stop in time; killing it")
            try:
                os.kill(self.manager_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _reap_manager(self) -> None:
        if not self.manager_pid:
            return
        try:
            pid, status = os.waitpid(self.manager_pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.manager_pid, 0
        if not pid:
            return
        self.manager_pid = 0
        if not self._shutting_down:
            log.error("the manager process exited unexpectedly (status %d); shutting down", status)
            self.failed = True
            self.begin_shutdown()
        assert self.main_reactor is not None
        self.main_reactor.stop()

    # -- manager ----------------------------------------------------------------------------
    def _manager_main(self) -> int:
        """The forked manager: single-threaded, forks and supervises every worker."""
        for mailbox in [*(reactor_mailbox(r) for r in range(self.reactor_num)), COMMAND_REPLIES]:
            self.inboxes.pop(mailbox).close()
        self._saved_signals.clear()
        _context.current().reset()
        reactor = self.manager_reactor = Reactor("manager")
        self.server.manager_pid = os.getpid()
        bind_manager_context(self.server, reactor)
        self.fire("manager_start")
        assert self.state is not None
        supervisor = self.supervisor = Supervisor(self.config, self.state, reactor, self._make_worker)
        inbox = messages.Inbox(self.inboxes[MANAGER], self._manager_message)
        reactor.add(inbox.fd, EPOLLIN, inbox.on_readable)

        def stop_all() -> None:
            supervisor.shutdown(reactor.stop)

        handlers = {signal.SIGTERM: stop_all, signal.SIGUSR1: lambda: supervisor.reload(False), signal.SIGUSR2: lambda: supervisor.reload(True), signal.SIGCHLD: self._reap}
        for signo, method in handlers.items():
            signal.signal(signo, lambda _s, _f, method=method: reactor.post(method))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(handlers) | {signal.SIGINT})

        watch_parent(reactor, lambda: None if supervisor.shutting_down else stop_all())
        supervisor.start_all()
        reactor.run()
        self.fire("manager_stop")
        return 0

    def _reap(self) -> None:
        assert self.supervisor is not None
        for worker in self.reaper.reap():
            self.supervisor.worker_exited(worker)

    def _manager_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        assert self.supervisor is not None
        if not self.manager_command(type_, src, session, port, payload):
            self.supervisor.handle_message(type_, src, session, payload)

    def _make_worker(self, role: str, worker_id: int) -> ProcessWorker:
        child = self.child_worker(role, worker_id)  # task worker or user process
        if child is not None:
            return child

        worker = ProcessWorker(worker_id, role, lambda: self._worker_main(worker_id), self.reaper, stop_message=lambda wait_event: self.post_stop(worker, 0, wait_event))
        return worker

    def _worker_main(self, worker_id: int) -> int:
        """A forked worker: keeps only its own mailbox, then runs the callbacks' loop."""
        from threadswoole.workers.pipe_worker import PipeWorker

        assert self.manager_reactor is not None
        self.manager_reactor.close_after_fork()
        self.keep_inboxes(self.roster.inboxes_of(worker_id))
        _context.current().reset()
        worker = self.worker = PipeWorker(self.config, self.state, worker_id, inbox=self.inboxes[worker_id], posts=self.posts, driver=self)
        child_signals(lambda: worker.reactor.post(worker.request_stop, "shutdown"))
        drop_privileges(self.settings)
        return worker.run()

    # -- requests from routers --------------------------------------------------------------
    def _to_manager(self, op: int, session: int = 0, payload: bytes = b"") -> bool:
        box = messages.Outbox(self.posts[MANAGER], _context.current().worker_id)
        box.put(op, session, payload)
        return box.flush_blocking(1.0)

    def request_reload(self, only_task: bool) -> bool:
        assert self.state is not None
        if self.state.q[layout.H_RELOADING] or self._shutting_down:
            return False
        if only_task and not self.task_num:
            return True  # nothing to reload
        self.state.q[layout.H_RELOADING] = 1
        return self._to_manager(messages.T_RELOAD, 0, b"\x01" if only_task else b"")

    def request_shutdown(self) -> bool:
        ctx = _context.current()
        if ctx.role == _context.ROLE_MASTER and self.main_reactor is not None:
            self.main_reactor.post(self.begin_shutdown)
            return True
        os.kill(self.server.master_pid, signal.SIGTERM)
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
        return self._to_manager(messages.T_STOP_WORKER, worker_id, b"\x01" if wait_event else b"")

    # -- tasks and commands -------------------------------------------------------------------
    def owner_mailbox(self, reactor_id: int, worker_id: int) -> int:
        """Sessions live in the master's reactor threads: operations go to the owning thread."""
        return reactor_mailbox(reactor_id)

    def reactor_command_target(self, process_id: int) -> Any:
        """command() for reactor thread `process_id`: run on that thread, answered from there."""
        if not 0 <= process_id < self.reactor_num or not self.reactor_threads:
            return _context.set_error(ErrorCode.INVALID_PARAMS)
        thread = self.reactor_threads[process_id]

        def run_there(request_id: int, index: int, payload: bytes) -> None:
            thread.reactor.post(lambda: answer_command(self.config, self.worker_transport(reactor_mailbox(process_id)), None, request_id, index, payload))

        return run_there
