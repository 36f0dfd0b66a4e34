"""A user process (`server.add_process(Process(fn))`, contract §11, seed 000/002).

The manager runs `fn(process)` in a process of its own (BASE, PROCESS: forked by the manager)
or in a thread (THREAD: `process.pid == master_pid`), and starts it again whenever `fn`
returns or crashes. It is not reloaded, has no worker_start/worker_stop, and at shutdown it gets
SIGTERM (THREAD: SystemExit raised in its thread, and its end of the pipe shut down so a
blocked read returns). Inside it the Server works as in a task worker that owns no connection
(contract §18.1): `send`, `close`, `connections`, `get_client_info`, `stats`, `send_message`, a
one-way `task()`; `task_wait*` raise ContextError. `process.export_socket()` is its end of the
Process pipe, the workers' `process.export_socket()` the other end (the seed's broadcast).

It has a loop of its own for timers (`server.tick`, `Timer`) and messages: once `fn` returns,
the loop runs while the user's timers are left, handling `pipe_message` too; a process whose
`fn` never returns handles pipe messages only if it runs that loop (it does not, in the seed's
`while True` example, which reads its pipe instead).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from typing import Any, Callable

from threadswoole import _context
from threadswoole.ipc import messages
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.child import watch_parent
from threadswoole.workers.event_dispatcher import EventDispatcher
from threadswoole.workers.remote_router import RemoteRouter
from threadswoole.workers.roster import RunConfig
from threadswoole.workers.runtime import Runtime
from threadswoole.workers.transport import Transport

log = logging.getLogger("threadswoole")
MAX_POLL_SECONDS = 1.0


class UserProcess:
    """The body of one user process (a forked child, or a thread in THREAD mode)."""

    def __init__(self, config: RunConfig, state: layout.SharedState, worker_id: int, process: Any, *, inbox: Any, transport: Transport, owner_mailbox: Callable[[int, int], int], task_client: Callable[[Any], Any], driver: Any, in_thread: bool) -> None:
        self.config = config
        self.server = config.server
        self.state = state
        self.worker_id = worker_id
        self.process = process
        self.in_thread = in_thread
        self.transport = transport
        self.reactor = Reactor(f"user-{worker_id}")
        self.generation = state.begin_generation(worker_id)
        self.counters = StatCounters(state, config.roster.worker_stat_slot(worker_id, self.generation))
        self.reactor.periodic.append(self.counters.flush)
        self.runtime = Runtime(worker_id, self.counters, max_request=0, grace=0, request_stop=lambda: None)
        self.router = RemoteRouter(config, state, driver, transport, self.counters, owner_mailbox=owner_mailbox, role_name="a user process", flush_counters_each=True)
        self.router.tasks = task_client(self.counters)  # one-way tasks (None without task workers)
        self.dispatcher = EventDispatcher(self.server, self.runtime, self.router, [], config.callbacks)
        self.inbox = messages.Inbox(inbox, self.handle_message)
        self.stopping = False
        self._lock = threading.Lock()  # THREAD mode: `interrupt` raises in fn only while fn runs
        self._in_callback = False
        self._interrupted = False

    def run(self) -> int:
        _context.bind_worker(self, _context.ROLE_USER, self.in_thread)
        self.state.set_worker_field(self.worker_id, layout.W_PID, os.getpid())
        self.state.set_worker_field(self.worker_id, layout.W_TID, threading.get_native_id())
        self.reactor.add(self.inbox.fd, EPOLLIN, self.inbox.on_readable)
        if not self.in_thread:
            watch_parent(self.reactor, self.stop)
        try:
            code = self._run_callback()
            # fn returned: like a script entering its event loop, run while timers are left
            reactor = self.reactor
            while code == 0 and not self.stopping and reactor.user_timer_count():
                delay = reactor.timers.next_delay(time.monotonic())
                reactor.run_once(MAX_POLL_SECONDS if delay is None else min(delay, MAX_POLL_SECONDS))
            return code
        finally:
            self.counters.flush()

    def _run_callback(self) -> int:
        with self._lock:
            self._in_callback = not self.stopping
        try:
            code = self.process.run_callback() if self._in_callback else 0
        except SystemExit:  # `interrupt`'s, delivered just after fn returned
            code = 0
        for _attempt in range(3):
            try:
                with self._lock:
                    self._in_callback = False
                if self._interrupted:  # raised but maybe not delivered yet: cancel it
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
                break
            except SystemExit:
                continue  # it was delivered here: there is only one
        return code

    def stop(self) -> None:
        """The manager went away (process modes): leave the loop after its current iteration."""
        self.stopping = True

    def interrupt(self, thread_ident: int) -> None:
        """THREAD mode shutdown, what SIGTERM is to a process: the loop is told to stop, the
        thread's end of the Process pipe is shut down (a blocked read returns), and SystemExit
        is raised in fn at its next Python instruction (PyThreadState_SetAsyncExc). A thread
        stuck in one long C call is given up after max_wait_time, like any stuck worker thread."""
        self.stopping = True
        self.reactor.post(lambda: None)  # wake its loop, if it runs one
        self.process.shutdown_thread_pipe()
        with self._lock:
            if self._in_callback and not self._interrupted:
                self._interrupted = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), ctypes.py_object(SystemExit))

    def handle_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        if type_ == messages.T_PIPE_MESSAGE:
            self.dispatcher.pipe_message(src, payload)
