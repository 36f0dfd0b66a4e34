"""Gates for tests that time two workers against each other: sockets the test holds.

A worker's callback connects to a gate and blocks on `recv(1)` until the test sends a byte:
the test, not a sleep, says when the worker goes on. `first_instance` lets only the first
instance of a worker take part (its replacements after a stop or reload start freely).
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Callable, Iterator


def gate(timeout: float = 20.0) -> socket.socket:
    """A listening socket on 127.0.0.1 for one worker to connect to."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(timeout)
    return server


def first_instance(markers: str, worker_id: int) -> bool:
    """True in the first instance of `worker_id` to start (it creates `markers % worker_id`)."""
    try:
        os.close(os.open(markers % worker_id, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def wait_at_gate(port: int, emit: Callable[..., Any] | None = None, worker_id: int = 1) -> None:
    """In a worker: connect to the gate at `port`, emit "held" for `worker_id` (when given an
    emit), and block until the test opens the gate."""
    with socket.create_connection(("127.0.0.1", port)) as held:
        if emit is not None:
            emit("held", worker_id=worker_id)
        held.recv(1)


@contextlib.contextmanager
def two_gates(hold_1: socket.socket, hold_0: socket.socket, handle: Any, held_timeout: float = 20.0) -> Iterator[tuple[socket.socket, socket.socket]]:
    """In the test: the two workers' connections to their gates, once worker 1 is held; both
    gates close at the end (which releases any worker still waiting at one)."""
    gate_1, _ = hold_1.accept()
    gate_0, _ = hold_0.accept()
    with gate_1, gate_0:
        handle.wait("held", timeout=held_timeout)
        yield gate_1, gate_0
