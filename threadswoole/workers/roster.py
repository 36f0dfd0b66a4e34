"""The roster: every worker of a server, sized in one place, and what a running server is made of.

Global worker ids follow contract §16: event workers `0..W-1`, task workers `W..W+T-1`, user
processes `W+T+i`. Everything sized per worker (shared-memory worker and stats slots, PROCESS
reactor-thread stats slots, mailboxes) is sized from a `Roster`, so adding a kind of worker
only adds a body, never another `range(worker_num)`.

`RunConfig` is what `Server.start()` hands a mode driver: the public Server (passed to every
callback), its effective settings and callback table, the prepared listeners and the roster.
Lower layers read these instead of the Server's private attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

EVENT, TASK, USER = "event", "task", "user"
MANAGER = -1  # mailbox id of the manager (worker mailboxes use the global worker ids)
MASTER = -2  # message source id of the master (one-way tasks, commands)
TASK_QUEUE = -3  # task_ipc_mode 3: the one mailbox every task worker reads (competing)
COMMAND_REPLIES = -4  # the master's inbox for the answers to command()
REPLY_BASE = -1000  # reply_mailbox(w): event worker w's task_wait results


def reply_mailbox(worker_id: int) -> int:
    """Mailbox id of the results of event worker `worker_id`'s task_wait/_multi/task_co
    (kept apart from its event mailbox: a waiting worker reads only its results)."""
    return REPLY_BASE - worker_id


class Roster:
    """Event, task and user workers (and, in PROCESS mode, the reactor threads' stats slots)."""

    def __init__(self, event_num: int, task_num: int = 0, user_num: int = 0, *, reactor_num: int = 0, shared_task_queue: bool = False) -> None:
        if event_num < 1 or task_num < 0 or user_num < 0 or reactor_num < 0:
            raise ValueError("a roster needs at least one event worker and no negative counts")
        self.event_num = event_num
        self.task_num = task_num
        self.user_num = user_num
        self.reactor_num = reactor_num
        self.shared_task_queue = shared_task_queue and task_num > 0  # task_ipc_mode 3

    @property
    def total(self) -> int:
        """Workers of every role: the size of the shared worker table."""
        return self.event_num + self.task_num + self.user_num

    def ids(self, role: str | None = None) -> range:
        """Global ids of one role (or of every worker)."""
        first_task = self.event_num
        first_user = first_task + self.task_num
        if role is None:
            return range(self.total)
        if role == EVENT:
            return range(0, first_task)
        if role == TASK:
            return range(first_task, first_user)
        if role == USER:
            return range(first_user, self.total)
        raise ValueError(f"unknown worker role {role!r}")

    def role_of(self, worker_id: int) -> str:
        if 0 <= worker_id < self.event_num:
            return EVENT
        if worker_id < self.event_num + self.task_num:
            return TASK
        if worker_id < self.total:
            return USER
        raise ValueError(f"worker id {worker_id} is not in the roster (0..{self.total - 1})")

    # -- what is sized from the roster ----------------------------------------------------
    @property
    def stat_slots(self) -> int:
        """Stats slots: the master, one per reactor thread, two per worker id."""
        return 1 + self.reactor_num + 2 * self.total

    def reactor_stat_slot(self, reactor_id: int) -> int:
        return 1 + reactor_id

    def worker_stat_slot(self, worker_id: int, generation: int) -> int:
        """Two slots per worker id by generation parity: while an old instance drains
        (reload_async, stop(-1, True)) and its replacement runs, each writes its own."""
        return 1 + self.reactor_num + 2 * worker_id + (generation & 1)

    def mailbox_ids(self) -> list[int]:
        """Mailboxes of the workers (by global id) and of the manager, plus those of the task
        system: the event workers' reply boxes and the shared task queue (task_ipc_mode 3)."""
        return [*self.ids(), MANAGER, *self.task_mailbox_ids()]

    def task_mailbox_ids(self) -> list[int]:
        """The reply boxes of the event workers and the shared queue, when there are tasks."""
        if not self.task_num:
            return []
        return [*(reply_mailbox(w) for w in self.ids(EVENT)), *([TASK_QUEUE] if self.shared_task_queue else [])]

    def inboxes_of(self, worker_id: int) -> set[int]:
        """The mailboxes a worker reads (a forked worker closes every other inbox)."""
        role = self.role_of(worker_id)
        if role == EVENT:
            return {worker_id, reply_mailbox(worker_id)} if self.task_num else {worker_id}
        if role == TASK and self.shared_task_queue:
            return {worker_id, TASK_QUEUE}
        return {worker_id}

    def __repr__(self) -> str:
        return f"<Roster event={self.event_num} task={self.task_num} user={self.user_num} reactors={self.reactor_num}>"


@dataclass
class RunConfig:
    """A server as it runs: fixed at start(), read by every layer below the public API."""

    server: Any  # the public Server object: the first argument of the callbacks
    settings: Mapping[str, Any]  # effective settings (contract R8), read-only
    callbacks: Any  # the server-level CallbackTable (lookup(name) by canonical name)
    ports: list[Any]  # prepared listeners (Port objects)
    roster: Roster
    processes: list[Any] = field(default_factory=list)  # user processes (add_process)
    commands: Any = None  # the CommandTable of add_command (workers/commands.py)

    def callback(self, name: str) -> Any:
        """The server-level callback of a canonical event name, or None."""
        return self.callbacks.lookup(name)
