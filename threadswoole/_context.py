"""Per-worker context (contract R5): what differs per worker is thread-local, so THREAD mode works.

Each worker (a process in BASE/PROCESS, a thread in THREAD mode) sets its own fields when it
starts; code outside any server sees the defaults (role "none", worker_id -1).
"""

from __future__ import annotations

import threading
from typing import Any

ROLE_NONE = "none"
ROLE_MASTER = "master"
ROLE_MANAGER = "manager"
ROLE_WORKER = "worker"
ROLE_TASK = "task"
ROLE_USER = "user"
ROLE_REACTOR = "reactor"


class WorkerContext(threading.local):
    """The calling thread's worker identity, last error, event loop and API router."""

    server: Any = None
    role: str = ROLE_NONE
    worker_id: int = -1
    worker_pid: int = 0
    worker_tid: int | None = None
    last_error: int = 0
    loop: Any = None  # the Reactor running in this thread, if any
    router: Any = None  # mode-specific implementation of send/close/... for this worker
    send_function: Any = None  # Server.send's fast path: this worker's send(session, data)
    runtime: Any = None  # the worker's event runtime (callbacks, counters)
    worker_obj: Any = None  # the worker object running in this thread (EventWorker / PipeWorker)

    def reset(self) -> None:
        """Forget every field (a forked child or a new thread starts from the defaults)."""
        self.__dict__.clear()


_context = WorkerContext()


def current() -> WorkerContext:
    """The calling thread's context."""
    return _context


def set_error(code: int) -> bool:
    """Record `code` as the last error of this worker and return False (the R3 failure value)."""
    _context.last_error = code
    return False
