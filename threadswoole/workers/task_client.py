"""The sending side of tasks (contract §7): task ids, the choice of task worker, and the waits.

Every worker or process that may send tasks has one TaskClient (per worker instance, so per
thread in THREAD mode, as R5 asks for the task-id counter and the pending task_wait slots):

- an event worker: `task()` with its result delivered to `on_finish` (or the task's
  `finish_callback`) in this worker, and `task_wait`, `task_wait_multi`, `task_co`, which block
  this worker's loop until the results are in its *reply box* (a mailbox of its own, so a
  waiting worker reads nothing else) or the timeout passes;
- the master, the manager and user processes: one-way `task()` only (seed 000/002); the
  task worker's results are discarded.

`dst_worker_id = -1` picks an idle task worker (shared worker table), starting after the last
one chosen so a burst is spread; with none idle, the next one in turn (round robin). With
`task_ipc_mode = 3` every task goes to the one queue that all task workers read.
"""

from __future__ import annotations

import logging
import select
import time
import warnings
from typing import Any, Callable, Sequence

from threadswoole._context import set_error
from threadswoole.constants import SWOOLE_WORKER_IDLE
from threadswoole.errors import ContextError, ErrorCode, SwooleWarning
from threadswoole.ipc import messages
from threadswoole.state import shared as layout
from threadswoole.workers.roster import TASK_QUEUE, RunConfig
from threadswoole.workers.task_payload import F_ONE_WAY, F_WAIT, PayloadCodec
from threadswoole.workers.transport import Transport

log = logging.getLogger("threadswoole")

MAX_WAIT_TASKS = 1024  # seed: task_wait_multi / task_co take at most 1024 tasks
ID_LIMIT = 2**32  # task ids wrap at 2**32 (seed: "0 to 4.2 billion")


class TaskClient:
    """Tasks sent by one worker (or by the master, the manager, a user process: `one_way`)."""

    def __init__(self, config: RunConfig, state: layout.SharedState, transport: Transport, codec: PayloadCodec, *, role_name: str, one_way: bool, counters: Any = None, reply_inbox: Any = None) -> None:
        roster = config.roster
        self.state = state
        self.transport = transport
        self.codec = codec
        self.role_name = role_name
        self.one_way = one_way
        self.counters = counters  # None for the master and the manager: their tasks are not counted
        self.first_task = roster.event_num
        self.task_num = roster.task_num
        self.shared_queue = roster.shared_task_queue
        self.callbacks: dict[int, Callable[..., Any]] = {}  # task id -> finish_callback
        self._next_id = 0
        self._round = 0
        self._waiting: dict[int, Any] = {}  # task id -> result, for the tasks being waited for
        self._reply = messages.Inbox(reply_inbox, self._on_reply) if reply_inbox is not None else None

    # -- sending ------------------------------------------------------------------------
    def _check_dst(self, dst: Any) -> int:
        if isinstance(dst, bool) or not isinstance(dst, int):
            raise TypeError(f"dst_worker_id must be an int, not {type(dst).__name__}")
        if dst != -1 and not 0 <= dst < self.task_num:
            raise ValueError(f"dst_worker_id is a task-pool index in [0, {self.task_num}) or -1, got {dst}")
        return dst

    def _target(self, dst: int) -> int:
        if self.shared_queue:
            return TASK_QUEUE  # task_ipc_mode 3: dst_worker_id is ignored, the task workers compete
        if dst >= 0:
            return self.first_task + dst
        count = self.task_num
        start = self._round
        self._round = (start + 1) % count
        field = self.state.worker_field
        for step in range(count):
            candidate = self.first_task + (start + step) % count
            if field(candidate, layout.W_STATUS) == SWOOLE_WORKER_IDLE:
                return candidate
        return self.first_task + start

    def _send(self, data: Any, dst: int, flags: int, what: str) -> int | bool:
        payload, payload_flags = self.codec.encode(data, what)
        task_id = self._next_id
        self._next_id = (task_id + 1) % ID_LIMIT
        if not self.transport.post(self._target(dst), messages.T_TASK, task_id, payload, port=flags | payload_flags):
            self.codec.discard(payload, payload_flags)
            return False
        counters = self.counters
        if counters is not None:
            counters.tasking += 1
            counters.task_bytes += len(payload)
        return task_id

    def task(self, data: Any, dst: int, callback: Callable[..., Any] | None) -> int | bool:
        dst = self._check_dst(dst)
        if callback is not None and not callable(callback):
            raise TypeError("finish_callback must be callable")
        if self.one_way:
            return self._send(data, dst, F_ONE_WAY, "task")  # seed: no result, finish_callback ignored
        task_id = self._send(data, dst, 0, "task")
        if callback is not None and task_id is not False:
            self.callbacks[task_id] = callback  # type: ignore[index]
        return task_id

    # -- waiting ------------------------------------------------------------------------
    def _check_wait(self, what: str, timeout: Any) -> float:
        if self.one_way or self._reply is None:
            raise ContextError(f"{what}() can only be called in an event worker, not in {self.role_name}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        return max(0.001, float(timeout))  # 1 ms granularity (seed)

    def task_wait(self, data: Any, timeout: Any, dst: int) -> Any:
        seconds = self._check_wait("task_wait", timeout)
        dst = self._check_dst(dst)
        task_id = self._send(data, dst, F_WAIT, "task_wait")
        if task_id is False:
            return False
        results = self._wait([task_id], seconds)  # type: ignore[list-item]
        if task_id in results:
            return results[task_id]
        return set_error(ErrorCode.TASK_TIMEOUT)

    def _many(self, what: str, tasks: Sequence[Any], timeout: Any) -> tuple[list[Any], dict[int, Any]]:
        seconds = self._check_wait(what, timeout)
        if len(tasks) > MAX_WAIT_TASKS:
            raise ValueError(f"{what}() takes at most {MAX_WAIT_TASKS} tasks, got {len(tasks)}")
        payloads = [self.codec.encode(data, what) for data in tasks]  # all checked before any is sent
        ids: list[Any] = []
        for payload, payload_flags in payloads:
            task_id = self._next_id
            self._next_id = (task_id + 1) % ID_LIMIT
            if self.transport.post(self._target(-1), messages.T_TASK, task_id, payload, port=F_WAIT | payload_flags):
                if self.counters is not None:
                    self.counters.tasking += 1
                    self.counters.task_bytes += len(payload)
                ids.append(task_id)
            else:
                self.codec.discard(payload, payload_flags)
                ids.append(None)  # not sent: missing (task_wait_multi) / False (task_co)
        return ids, self._wait([i for i in ids if i is not None], seconds)

    def task_wait_multi(self, tasks: Sequence[Any], timeout: Any) -> dict[int, Any]:
        ids, results = self._many("task_wait_multi", tasks, timeout)
        return {index: results[task_id] for index, task_id in enumerate(ids) if task_id in results}

    def task_co(self, tasks: Sequence[Any], timeout: Any) -> list[Any]:
        ids, results = self._many("task_co", tasks, timeout)
        return [results.get(task_id, False) if task_id is not None else False for task_id in ids]

    def _wait(self, task_ids: list[int], seconds: float) -> dict[int, Any]:
        """Block this worker until every task has a result or `seconds` passed; the results in."""
        assert self._reply is not None
        waiting = self._waiting
        for task_id in task_ids:
            waiting[task_id] = _PENDING
        results: dict[int, Any] = {}
        deadline = time.monotonic() + seconds
        remaining = set(task_ids)
        fd = self._reply.fd
        try:
            while remaining:
                self._reply.on_readable()  # what is there already (more may have come since the poll)
                for task_id in [t for t in remaining if waiting[t] is not _PENDING]:
                    results[task_id] = waiting[task_id]
                    remaining.discard(task_id)
                left = deadline - time.monotonic()
                if not remaining or left <= 0:
                    break
                try:
                    select.select([fd], [], [], left)
                except InterruptedError:
                    pass
        finally:
            for task_id in task_ids:
                waiting.pop(task_id, None)  # a result that comes later has expired (discarded)
        return results

    def _on_reply(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        """A result in the reply box: for a task being waited for, or one that expired."""
        if type_ != messages.T_FINISH:
            return
        if self._waiting.get(session, None) is _PENDING:
            try:
                self._waiting[session] = self.codec.decode(payload, port)
            except Exception:
                log.exception("task %d: its result could not be unpickled; treated as lost", session)
            return
        self.codec.discard(payload, port)
        # seed 002: a second finish for a waited-for task, or a result after the timeout
        message = f"task[{session}] has expired"
        log.warning("%s (a result from task worker %d after the wait ended)", message, src)
        warnings.warn(message, SwooleWarning, stacklevel=2)

    def drain_expired(self, _mask: int = 0) -> None:
        """The reply box became readable while nobody waits: late results (registered in the loop)."""
        assert self._reply is not None
        self._reply.on_readable()

    @property
    def reply_fd(self) -> int | None:
        return None if self._reply is None else self._reply.fd

    # -- results of async tasks (the event worker's mailbox) --------------------------------
    def finished(self, task_id: int, flags: int, payload: bytes) -> tuple[Any, Callable[..., Any] | None] | None:
        """A T_FINISH from a task worker: (data, the task's finish_callback or None); None if
        the result cannot be read."""
        try:
            data = self.codec.decode(payload, flags)
        except Exception:
            log.exception("task %d: its result could not be unpickled; on_finish is not called", task_id)
            return None
        return data, self.callbacks.pop(task_id, None)  # seed: the callback replaces on_finish once


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<pending>"


_PENDING = _Pending()
__all__ = ["TaskClient", "MAX_WAIT_TASKS"]
