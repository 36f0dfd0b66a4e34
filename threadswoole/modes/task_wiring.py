"""What every mode driver does the same way for task workers, user processes and commands.

A mixin of DriverBase. The mailboxes (datagram socketpairs, ipc/messages.py) are made by the
driver before any fork or thread: one per worker id (event workers' only in BASE and PROCESS;
THREAD event workers are reached through the driver's `deliver`), the manager's, a reply box
per event worker for its task_wait results, the shared task queue (task_ipc_mode 3) and the
master's command replies. The manager keeps every inbox open, so a respawned worker reads
what was queued for its predecessor. Here are the bodies' constructors (TaskWorker,
UserProcess), the forked children's set-up, the routers of the master and the manager
(one-way tasks, `send_message` from the manager, `command` from the master) and where a
command goes.

task_ipc_mode 2 and 3 use no SysV message queue: measured with `stress/task_ipc_bench.py`, a
SysV msgsnd + msgrcv pair through ctypes costs 4-9x a datagram send + recv, and a SysV queue
cannot be watched by epoll, so a task worker would need a thread blocked in msgrcv to keep its
loop (timers, pipe messages, stop requests). Mode 2 is mode 1 (one mailbox per task worker,
`dst_worker_id` honoured) plus the `task_queue_num` / `task_queue_bytes` stats; mode 3 is one
mailbox that every task worker reads (competing), `dst_worker_id` ignored. `message_queue_key`
is accepted and unused; nothing outlives the server.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from threadswoole import _context, _forking
from threadswoole.errors import ContextError, ErrorCode
from threadswoole.ipc import messages
from threadswoole.workers import commands
from threadswoole.workers.child import MASTER_SIGNALS, child_signals, drop_privileges
from threadswoole.workers.event_worker import check_message_target
from threadswoole.workers.remote_router import pickled
from threadswoole.workers.roster import COMMAND_REPLIES, EVENT, MANAGER, MASTER, TASK, TASK_QUEUE, USER, reply_mailbox
from threadswoole.workers.router import Router
from threadswoole.workers.task_client import TaskClient
from threadswoole.workers.task_payload import PayloadCodec
from threadswoole.workers.task_worker import TaskWorker
from threadswoole.workers.transport import Transport
from threadswoole.workers.user_process import UserProcess
from threadswoole.workers.worker import ProcessWorker

class OutsideRouter(Router):
    """Calls made from the master (on_start, on_shutdown, its timers) or the manager: one-way
    tasks, `send_message` from the manager, `command` from the master (contract §5.2)."""

    def __init__(self, driver: Any, role: str) -> None:
        super().__init__(driver.server, driver.state, driver)
        self.role = role
        self.transport = driver.worker_transport(MASTER if role == _context.ROLE_MASTER else MANAGER)
        self.tasks = driver.task_client(MASTER if role == _context.ROLE_MASTER else MANAGER, None, self.transport)
        self._commands: commands.MasterCommands | None = None

    @property
    def role_name(self) -> str:  # type: ignore[override]
        return f"the {self.role}"

    def send_message(self, message: Any, worker_id: int) -> bool:
        if self.role == _context.ROLE_MASTER:
            raise ContextError("send_message() cannot be called in the master (contract §5.2); call it from a worker, a task worker, a user process or the manager")
        check_message_target(self.driver.config, worker_id)
        return self.transport.post(worker_id, messages.T_PIPE_MESSAGE, 0, pickled(message, "send_message"))

    def command(self, name: str, process_id: int, process_type: int, data: Any, json_decode: bool) -> Any:
        if self.role != _context.ROLE_MASTER:
            return super().command(name, process_id, process_type, data, json_decode)
        if self._commands is None:
            self._commands = commands.MasterCommands(self.driver.config, self.driver, self.transport, self.driver.inboxes.get(COMMAND_REPLIES))
        return self._commands.call(name, process_id, process_type, data, json_decode)


class TaskWiring:
    """Mixin: tasks, user processes and commands for a mode driver (see the module docstring)."""

    spill_tasks = True  # process modes: big payloads through task_tmpdir (THREAD: the bytes)
    uses_deliver = False  # THREAD: event workers are reached through `deliver_to`
    manager_inline = False  # BASE: the master process is the manager (commands run in place)

    def init_task_wiring(self) -> None:
        self.inboxes: dict[int, Any] = {}
        self.posts: dict[int, Any] = {}
        self._codec: PayloadCodec | None = None
        self._outside_routers: dict[tuple[str, int], OutsideRouter] = {}

    def create_mailboxes(self, ids: list[int]) -> None:
        for mailbox in ids:
            self.inboxes[mailbox], self.posts[mailbox] = messages.make_pipe()

    def close_mailboxes(self) -> None:
        for sock in list(self.inboxes.values()) + list(self.posts.values()):
            sock.close()
        self.inboxes.clear()
        self.posts.clear()

    def keep_inboxes(self, keep: set[int]) -> None:
        """In a forked worker: close every inbox it does not read."""
        for mailbox in [m for m in self.inboxes if m not in keep]:
            self.inboxes.pop(mailbox).close()

    # -- the parts ------------------------------------------------------------------------
    @property
    def codec(self) -> PayloadCodec:
        if self._codec is None:
            self._codec = PayloadCodec(self.settings, self.server.master_pid or os.getpid(), spill=self.spill_tasks)  # type: ignore[attr-defined]
        return self._codec

    def deliver_to(self, target: int, message: tuple) -> bool:
        raise LookupError(f"no mailbox {target}")

    def worker_transport(self, src: int) -> Transport:
        return Transport(self.posts, src, deliver=self.deliver_to if self.uses_deliver else None, block_seconds=self.settings["max_wait_time"])  # type: ignore[attr-defined]

    def task_client(self, worker_id: int, counters: Any, transport: Transport) -> TaskClient | None:
        roster = self.roster  # type: ignore[attr-defined]
        if not roster.task_num:
            return None
        role = roster.role_of(worker_id) if worker_id >= 0 else None
        names = {EVENT: "an event worker", TASK: "a task worker", USER: "a user process", None: "the master" if worker_id == MASTER else "the manager"}
        event = role == EVENT
        return TaskClient(self.config, self.state, transport, self.codec, role_name=names[role], one_way=not event, counters=counters, reply_inbox=self.inboxes.get(reply_mailbox(worker_id)) if event else None)  # type: ignore[attr-defined]

    def owner_mailbox(self, reactor_id: int, worker_id: int) -> int:
        """Where operations on a session go: its owning worker (BASE, THREAD)."""
        return worker_id

    def process_of(self, worker_id: int) -> Any:
        return self.config.processes[worker_id - self.roster.event_num - self.roster.task_num]  # type: ignore[attr-defined]

    def new_task_worker(self, worker_id: int, *, in_thread: bool, notify: Any = None) -> TaskWorker:
        transport = self.worker_transport(worker_id)
        if notify is None:  # process modes: to the manager's mailbox
            notify = lambda op, payload: transport.post(MANAGER, op, 0, payload)  # noqa: E731
        queue = self.inboxes.get(TASK_QUEUE) if self.roster.shared_task_queue else None  # type: ignore[attr-defined]
        return TaskWorker(self.config, self.state, worker_id, inbox=self.inboxes[worker_id], queue=queue, transport=transport, codec=self.codec, owner_mailbox=self.owner_mailbox, notify=notify, driver=self, in_thread=in_thread)  # type: ignore[attr-defined]

    def new_user_process(self, worker_id: int, *, in_thread: bool) -> UserProcess:
        transport = self.worker_transport(worker_id)
        return UserProcess(self.config, self.state, worker_id, self.process_of(worker_id), inbox=self.inboxes[worker_id], transport=transport, owner_mailbox=self.owner_mailbox, task_client=lambda counters: self.task_client(worker_id, counters, transport), driver=self, in_thread=in_thread)  # type: ignore[attr-defined]

    # -- children of the manager (BASE, PROCESS) -------------------------------------------
    def child_worker(self, role: str, worker_id: int) -> ProcessWorker | None:
        """The ProcessWorker of a task worker or user process (None: an event worker)."""
        if role == TASK:
            # A stop is SIGTERM: it stops after its current task, the queued ones wait for the
            # replacement. With wait_event (reload_async, stop(id, True)) it is a message behind
            # the queued tasks: the worker drains its queue first. A full mailbox (a long
            # on_task) makes that message wait for room, from the manager's loop (post_stop):
            # never dropped, and the manager never blocks on it.
            def stop(wait_event: bool) -> None:
                if wait_event:
                    self.post_stop(worker, 0, True)  # type: ignore[attr-defined]
                else:
                    worker.terminate()

            worker = ProcessWorker(worker_id, role, lambda: self._task_child(worker_id), self.reaper, stop_message=stop)  # type: ignore[attr-defined]
            return worker
        if role == USER:
            process = self.process_of(worker_id)
            return ProcessWorker(worker_id, role, lambda: self._user_child(worker_id), self.reaper, before_fork=process.before_fork, forked=lambda pid: process.enter_parent(pid, keep_child_end=True))  # type: ignore[attr-defined]
        return None

    def _task_child(self, worker_id: int) -> int:
        self.manager_reactor.close_after_fork()  # type: ignore[attr-defined]
        self.keep_inboxes(self.roster.inboxes_of(worker_id))  # type: ignore[attr-defined]
        _context.current().reset()
        self._saved_signals.clear()  # type: ignore[attr-defined]
        worker = self.new_task_worker(worker_id, in_thread=False)
        child_signals(worker.stop_soon)
        drop_privileges(self.settings)  # type: ignore[attr-defined]
        return worker.run()

    def _user_child(self, worker_id: int) -> int:
        self.keep_inboxes(self.roster.inboxes_of(worker_id))  # type: ignore[attr-defined]
        self._saved_signals.clear()  # type: ignore[attr-defined]
        # Process.enter_child: the manager's loop (current().loop) closed, context and signal
        # handlers reset (seed 003), the parent end of its pipe closed.
        self.process_of(worker_id).enter_child()
        for signo in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signo, signal.SIG_IGN)  # the master's signals, as in every worker
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # shutdown: SIGTERM ends it (seed)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, MASTER_SIGNALS)
        drop_privileges(self.settings)  # type: ignore[attr-defined]
        code = self.new_user_process(worker_id, in_thread=False).run()
        _forking.flush_stdio()  # the child ends with os._exit: print() output must not be lost
        return code

    # -- the master and the manager ----------------------------------------------------------
    def outside_router(self) -> Router:
        if self.state is None:  # type: ignore[attr-defined]
            raise ContextError("the server is not running yet")
        role = _context.current().role
        role = role if role in (_context.ROLE_MASTER, _context.ROLE_MANAGER) else _context.ROLE_MASTER
        key = (role, os.getpid())
        router = self._outside_routers.get(key)
        if router is None:
            router = self._outside_routers[key] = OutsideRouter(self, role)
        return router

    def manager_command(self, type_: int, src: int, session: int, port: int, payload: bytes) -> bool:
        """In the manager: answer a T_COMMAND (True when the message was one)."""
        if type_ != messages.T_COMMAND:
            return False
        router = self.outside_router()
        assert isinstance(router, OutsideRouter)
        commands.answer_command(self.config, router.transport, None, session, port, payload)  # type: ignore[attr-defined]
        return True

    def command_target(self, process_type: int, process_id: int) -> Any:
        """Where `command()` sends a request: a mailbox id, None (here, in the master), a
        callable (a PROCESS reactor thread), or False with the reason recorded."""
        roster = self.roster  # type: ignore[attr-defined]
        if process_type == commands.MASTER:
            return None
        if process_type == commands.MANAGER:
            if self.manager_inline:  # BASE: the master runs the manager loop, if there is one
                return None if self.managed else _context.set_error(ErrorCode.OPERATION_NOT_SUPPORT)  # type: ignore[attr-defined]
            return MANAGER
        if process_type == commands.REACTOR_THREAD:
            return self.reactor_command_target(process_id)
        count, first = (roster.event_num, 0) if process_type == commands.EVENT_WORKER else (roster.task_num, roster.event_num)
        if not 0 <= process_id < count:
            return _context.set_error(ErrorCode.INVALID_PARAMS)
        if not self.inboxes and not self.uses_deliver:
            return None  # BASE with one worker: the master process is event worker 0
        return first + process_id

    def reactor_command_target(self, process_id: int) -> Any:
        return _context.set_error(ErrorCode.OPERATION_NOT_SUPPORT)  # reactor threads: PROCESS only
