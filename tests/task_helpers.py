"""Helpers of the task-worker, user-process and command tests: driving a server's event worker
from the test (a TCP command), reporting worker starts and warnings as events."""

from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Any, Callable

from conftest import connect
from threadswoole.errors import SwooleWarning


def report_workers(server: Any, emit: Callable[..., Any], on_start: Callable[..., Any] | None = None) -> None:
    """worker_start / worker_stop events with the instance (pid, or native thread id in THREAD
    mode) and `task_worker`; SwooleWarnings in any worker become "warning" events."""

    def on_worker_start(srv: Any, worker_id: int) -> None:
        warnings.simplefilter("always", SwooleWarning)
        warnings.showwarning = lambda message, category, *rest: emit("warning", message=str(message), worker_id=srv.worker_id)
        emit("worker_start", worker_id=worker_id, instance=srv.worker_tid or os.getpid(), process=os.getpid(), task=srv.task_worker, get_worker_id=srv.get_worker_id())
        if on_start is not None:
            on_start(srv, worker_id)

    server.on("worker_start", on_worker_start)
    server.on("worker_stop", lambda srv, worker_id: emit("worker_stop", worker_id=worker_id, instance=srv.worker_tid or os.getpid()))


def command(handle: Any, text: str, timeout: float = 10.0) -> socket.socket:
    """Send `text` to the server (its on_receive runs the action); returns the open connection."""
    client = connect(handle.port, timeout=timeout)
    client.sendall(text.encode())
    return client


def run_actions(actions: dict[str, Callable[..., Any]], emit: Callable[..., Any]) -> Callable[..., Any]:
    """An on_receive that runs `actions[name](srv, fd)` for a packet `name` and emits its result
    as event `name` (an exception becomes {"error": "TypeName"})."""

    def on_receive(srv: Any, fd: int, reactor_id: int, data: bytes) -> None:
        name = data.decode().strip()
        try:
            result = actions[name](srv, fd)
        except Exception as exc:
            result = {"error": type(exc).__name__, "message": str(exc)}
        emit(name, **(result if isinstance(result, dict) else {"result": result}))

    return on_receive


def starts(handle: Any, count: int, timeout: float = 15.0) -> dict[int, dict[str, Any]]:
    """The next `count` worker_start events, by worker id."""
    return {event["worker_id"]: event for event in handle.wait_n("worker_start", count, timeout)}


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def spilled_files(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("threadswoole-task-"))


def parked(process: Any) -> None:
    """A user-process body that waits for the server to stop (SIGTERM, or in THREAD mode its
    pipe shut down) reading its end of the pipe."""
    sock = process.export_socket()
    while sock.recv(64):
        pass
