"""A task worker (contract §7, §5.4): reads tasks from its mailbox and runs `on_task`.

The same body runs as a forked process (BASE, PROCESS) or as a thread (THREAD): its own loop
(timers, deferred calls), its mailbox, and with `task_ipc_mode = 3` also the one queue every
task worker reads (EPOLLEXCLUSIVE, one task per wake-up, so an idle worker takes the next task
while a busy one runs its own). Each task is one datagram; the worker reads the next one only
when `on_task` has returned, so when it dies (kill -9) the tasks behind the one it ran are still
in the mailbox, which the manager keeps open, and its replacement runs them.

While `on_task` runs the worker's status is BUSY (shared worker table), IDLE otherwise (seed
003). `finish(data)` sends a result at once, and a non-None return value is one more
`finish` (seed: "returning a value = calling finish"); results of one-way tasks (from the
master, the manager or a user process) are discarded. A stop (reload, `stop()`, shutdown,
`task_max_request`) takes effect after the current task: reading stops, timers are cleared,
`worker_stop` runs, and what is still queued waits for the replacement.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import Any, Callable

from threadswoole import _context
from threadswoole.constants import SWOOLE_WORKER_BUSY, SWOOLE_WORKER_EXIT, SWOOLE_WORKER_IDLE
from threadswoole.errors import ContextError
from threadswoole.ipc import messages
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.child import watch_parent
from threadswoole.workers.commands import answer_command
from threadswoole.workers.event_dispatcher import EventDispatcher
from threadswoole.workers.remote_router import RemoteRouter
from threadswoole.workers.roster import RunConfig, reply_mailbox
from threadswoole.workers.runtime import Runtime
from threadswoole.workers.task_payload import F_ONE_WAY, F_WAIT, PayloadCodec
from threadswoole.workers.transport import Transport

log = logging.getLogger("threadswoole")
EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
DRAIN_CHECK_MS = 50
QUEUE_READ_SIZE = messages.BATCH_LIMIT + messages.HEADER_SIZE


class TaskRouter(RemoteRouter):
    """Server calls made in a task worker: `finish` works inside on_task, `task*` do not."""

    def __init__(self, worker: "TaskWorker", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.worker = worker

    def finish(self, data: Any) -> bool:
        return self.worker.finish(data)

    def _task_client(self, what: str) -> Any:
        raise ContextError(f"{what}() cannot be called in a task worker (seed 000/002)")

    def worker_counters(self) -> tuple[int, int, int]:
        return self.worker.runtime.requests, self.counters.response, 0


class TaskWorker:
    """One task worker; `run()` blocks until it stops and returns its exit code."""

    def __init__(self, config: RunConfig, state: layout.SharedState, worker_id: int, *, inbox: Any, queue: Any, transport: Transport, codec: PayloadCodec, owner_mailbox: Callable[[int, int], int], notify: Callable[[int, bytes], Any], driver: Any, in_thread: bool) -> None:
        self.config = config
        self.server = config.server
        self.state = state
        self.worker_id = worker_id
        self.transport = transport
        self.codec = codec
        self.notify = notify  # (T_WORKER_STARTED / T_WORKER_STOPPING, payload) to the supervisor
        self.in_thread = in_thread
        settings = config.settings
        self.reactor = Reactor(f"task-{worker_id}")
        self.generation = state.begin_generation(worker_id)
        self.counters = StatCounters(state, config.roster.worker_stat_slot(worker_id, self.generation))
        self.reactor.periodic.append(self.counters.flush)
        self.runtime = Runtime(worker_id, self.counters, max_request=settings.get("task_max_request", 0), grace=settings.get("max_request_grace", 0), request_stop=self.request_stop)
        self.router = TaskRouter(self, config=config, state=state, driver=driver, transport=transport, counters=self.counters, owner_mailbox=owner_mailbox, role_name="a task worker")
        self.dispatcher = EventDispatcher(self.server, self.runtime, self.router, [], config.callbacks)
        self.on_task = config.callback("task")
        self.inbox = messages.Inbox(inbox, self.handle_message)
        self.queue = messages.Inbox(queue, self.handle_message) if queue is not None else None
        self.current: tuple[int, int, int] | None = None  # (task id, source, flags) while on_task runs
        self._status = state.worker_base(worker_id) + layout.W_STATUS  # our status word (busy/idle)
        self.exit_code = 0
        self.stop_reason = ""
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> int:
        _context.bind_worker(self, _context.ROLE_TASK, self.in_thread)
        state = self.state
        state.set_worker_field(self.worker_id, layout.W_PID, os.getpid())
        state.set_worker_field(self.worker_id, layout.W_TID, threading.get_native_id())
        state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_IDLE)
        self.reactor.add(self.inbox.fd, EPOLLIN, self.inbox.on_readable)
        if self.queue is not None:
            self.reactor.add(self.queue.fd, EPOLLIN | EPOLLEXCLUSIVE, self._on_queue)
        if not self.in_thread:
            watch_parent(self.reactor, lambda: self.request_stop("orphaned"))
        self.dispatcher.worker_start(self.worker_id)
        self.notify(messages.T_WORKER_STARTED, b"")
        try:
            self.reactor.run()
        except SystemExit as exc:  # SystemExit in a callback ends this worker; it is restarted
            self.exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            self.stop_reason = "exit"
            self._leave()
        finally:
            self.counters.flush()
        return self.exit_code

    def _on_queue(self, _mask: int) -> None:
        """task_ipc_mode 3: take one task from the shared queue (then let the others compete)."""
        queue = self.queue
        assert queue is not None
        if queue.paused:
            return
        try:
            datagram = queue.sock.recv(QUEUE_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        queue.parse(datagram)

    def stop_soon(self, reason: str = "shutdown", wait_event: bool = False) -> None:
        """From a signal handler or another thread: read no further task, stop after this one."""
        self._pause()
        self.reactor.post(self.request_stop, reason, wait_event)

    def _pause(self) -> None:
        self.inbox.paused = True
        if self.queue is not None:
            self.queue.paused = True

    def request_stop(self, reason: str = "max_request", wait_event: bool = False) -> None:
        """On the worker's thread: stop once the current task has returned."""
        if self._stopping:
            return
        self._stopping = True
        self.stop_reason = reason
        self._pause()
        self.reactor.defer(lambda: self._begin_stop(wait_event))

    def _begin_stop(self, wait_event: bool) -> None:
        self.reactor.remove(self.inbox.fd)
        if self.queue is not None:
            self.reactor.remove(self.queue.fd)
        self.state.set_worker_field(self.worker_id, layout.W_STATUS, SWOOLE_WORKER_EXIT)
        if wait_event:  # stop(-1, True): the replacement starts now; our timers may finish
            self.notify(messages.T_WORKER_STOPPING, b"\x01" + os.getpid().to_bytes(4, "big"))
            self._wait_for_timers(time.monotonic() + self.config.settings["max_wait_time"])
            return
        self._leave()

    def _wait_for_timers(self, deadline: float) -> None:
        if self.reactor.user_timer_count() == 0 or time.monotonic() >= deadline:
            self._leave()
        else:
            self.reactor.after(DRAIN_CHECK_MS, self._wait_for_timers, deadline)

    def _leave(self) -> None:
        self.reactor.timers.clear_all()
        self.dispatcher.worker_stop(self.worker_id)
        self.reactor.stop()

    # -- messages ---------------------------------------------------------------------------
    def handle_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        if type_ == messages.T_TASK:
            self._run_task(src, session, port, payload)
        elif type_ == messages.T_PIPE_MESSAGE:
            self.dispatcher.pipe_message(src, payload)
        elif type_ == messages.T_COMMAND:
            answer_command(self.config, self.transport, self.runtime, session, port, payload)
        elif type_ == messages.T_STOP_WORKER:
            self.request_stop("stop", payload == b"\x01")

    def _run_task(self, src: int, task_id: int, flags: int, payload: bytes) -> None:
        counters = self.counters
        counted = src >= 0  # tasks of the master and the manager are not in the stats
        if counted:
            counters.task_taken += 1
            counters.task_taken_bytes += len(payload)
        state = self.state
        try:
            try:
                data = self.codec.decode(payload, flags)
            except Exception:
                log.exception("task worker %d: task %d from worker %d could not be unpickled; dropped", self.worker_id, task_id, src)
                return
            state.q[self._status] = SWOOLE_WORKER_BUSY
            if counted:
                counters.publish_task_taken()  # on_task may run long: taken meanwhile (stats)
            self.current = (task_id, src, flags)
            result = self.runtime.call("task", self.on_task, self.server, task_id, src if src >= 0 else -1, data)
            if result is not None:
                try:
                    self._finish(result)  # seed: returning a value is one more finish()
                except Exception:
                    self.runtime.failed("task")
        finally:
            self.current = None
            if not self._stopping:
                state.q[self._status] = SWOOLE_WORKER_IDLE
            if counted:
                counters.task_done += 1
            self.runtime.requests += 1  # task_max_request (not request_count: seed §5.6)
            self.runtime.check_max_request()

    def finish(self, data: Any) -> bool:
        """`server.finish(data)` inside on_task: the result goes to the worker that sent the task."""
        if self.current is None:
            raise ContextError("finish() can only be called inside on_task")
        return self._finish(data)

    def _finish(self, data: Any) -> bool:
        assert self.current is not None
        task_id, src, flags = self.current
        if flags & F_ONE_WAY or src < 0:
            return True  # seed: a one-way task's results are discarded
        payload, payload_flags = self.codec.encode(data, "finish")
        target = reply_mailbox(src) if flags & F_WAIT else src
        if self.transport.post(target, messages.T_FINISH, task_id, payload, port=(flags & F_WAIT) | payload_flags):
            return True
        self.codec.discard(payload, payload_flags)
        return False
