"""Per-worker context (contract R5): what differs per worker is thread-local, so THREAD mode works.

Each worker (a process in BASE/PROCESS, a thread in THREAD mode) sets its own fields when it
starts; code outside any server sees the defaults (role "none", worker_id -1).
"""

from __future__ import annotations

import os
import threading
import weakref
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
        _sender.__dict__.clear()


_context = WorkerContext()
# Server.send's fast path, as `_sender.send` (a SendPath, below), in a plain threading.local: an
# attribute of the exact type is read without the subclass's type lookup (528 against 646
# instructions, callgrind); a thread whose worker has no fast path has no attribute (AttributeError).
_sender = threading.local()


# Server.send's fast path, as one plain tuple (Server.send unpacks it into locals in one
# opcode: attributes of a __slots__ object, called, are looked up through the type each time,
# ~80 instructions per call, callgrind): (conns_get, write, count, words, reactor, limit, slow,
# queue_rest). Built by Host.make_send_path; `slow(session, data, server_socket)` takes every
# case but the common one (bytes to a session of this worker's Host, nothing queued). A worker
# without a Host (PROCESS) has one whose `conns_get` finds nothing: each send is `slow`'s.
SendPath = tuple


def forwarding_path(slow: Any) -> SendPath:
    """A send path on which every send is `slow`'s."""
    return ({}.get, None, None, None, None, 0, slow, None)


def current() -> WorkerContext:
    """The calling thread's context."""
    return _context


def bind_worker(worker: Any, role: str, in_thread: bool, send_function: Any = None, send_path: SendPath | None = None) -> WorkerContext:
    """Make the calling thread `worker`'s (of kind `role`): what the Server API reads to know
    who calls it. `worker` has server, worker_id, reactor, router and runtime."""
    ctx = _context
    ctx.server = worker.server
    ctx.role = role
    ctx.worker_id = worker.worker_id
    ctx.worker_pid = os.getpid()
    ctx.worker_tid = threading.get_native_id() if in_thread else None
    ctx.loop = worker.reactor
    ctx.router = worker.router
    ctx.send_function = send_function  # Server.send's fast path, for workers that own connections
    if send_function is not None:
        _sender.send = send_path if send_path is not None else forwarding_path(send_function)
    else:
        _sender.__dict__.clear()
    ctx.runtime = worker.runtime
    ctx.worker_obj = worker
    return ctx


def set_error(code: int) -> bool:
    """Record `code` as the last error of this worker and return False (the R3 failure value)."""
    _context.last_error = code
    return False


# Servers built in this process whose start() has not run yet. A Client may only be made inside
# a running server's callbacks, never between a Server's constructor and its start() (contract
# §12, seed 004); the Server constructor reports itself here and start() takes it out again.
_unstarted: "weakref.WeakSet[Any]" = weakref.WeakSet()


def server_created(server: Any) -> None:
    """A Server was constructed in this process (it is "not started" until `server_started`)."""
    _unstarted.add(server)


def server_started(server: Any) -> None:
    """`server.start()` is running (or has run): it no longer counts as not started."""
    _unstarted.discard(server)


def unstarted_server() -> Any:
    """A Server of this process built but not started, or None (unreferenced ones are collected first)."""
    if not _unstarted:
        return None
    import gc

    gc.collect()  # a server nobody holds may still sit in a reference cycle: only live ones count
    for server in _unstarted:
        return server
    return None
