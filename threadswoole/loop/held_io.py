"""Socket reads and writes that keep the GIL: what THREAD mode's worker threads use on a GIL build.

`os.read` and `os.write` release the GIL around the syscall, as every blocking call must. On a
non-blocking socket the syscall never waits, but the release still hands the GIL over whenever
another thread is waiting for it; with many worker threads in one process (THREAD mode, a
blocking WSGI handler: 32 threads taking turns) each of those hand-overs is a futex wake and a
context switch or two, and the thread that released must then wait its turn to carry on with the
request it had in hand. A request made one read, one write and 0.4 `epoll_wait` besides the
application's own blocking call, so 3.4 GIL releases where granian (I/O in Rust) makes 2.

These two call libc's `read`/`write` through `ctypes.PyDLL`, which keeps the GIL for the call:
about 0.6 us more per call than `os.read`/`os.write` (an 80-byte write and read on a socketpair:
4.7 against 3.5 us the pair, 2026-12-02), and the GIL is released only where the thread waits
for real (the application's sleep, a poll that blocks). They take the same arguments, return
the same values and raise the same `OSError`s (`BlockingIOError` for EAGAIN) as
`os.read`/`os.write`; anything else (a read larger than the buffer, a write larger than
HELD_WRITE_SIZE or of something other than bytes) goes to those.

`held_poll(epoll_fd)` is the same for the loop's poll: an `epoll_wait` with timeout 0 that keeps
the GIL. A THREAD worker of the blocking benchmark owns ~3 connections, all busy, and every poll
of its loop found 3-4 of them ready at once (`strace -T`: 1,225 of 1,227 polls returned events,
94% in under 100 us), so the loop looks there first and makes the releasing, waiting poll only
when nothing is ready (Reactor.keep_gil_for_ready_polls).

Only for non-blocking file descriptors and zero timeouts (a call that waits would hold every
thread while it waits), and only where the GIL exists: these say None on a free-threaded build,
without a loadable libc, or (the poll) on a CPU whose `struct epoll_event` layout is not known.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys
from typing import Callable

__all__ = ["held_io_functions", "held_poll", "gil_enabled", "HELD_READ_SIZE", "HELD_WRITE_SIZE"]

HELD_READ_SIZE = 65536  # the largest read kept under the GIL (a connection's RECV_SIZE)
# Larger writes release the GIL as os.write does: copying them into the socket takes long enough
# for other threads to run meanwhile (and ctypes passes an int argument as a C int).
HELD_WRITE_SIZE = 65536

MAX_EVENTS = 1023  # as select.epoll.poll() asks for by default (FD_SETSIZE - 1)
# struct epoll_event: uint32 events, then the 64-bit data, packed on x86-64 only (the kernel's
# __EPOLL_PACKED); select.epoll registers an fd in data.fd, the low 32 bits of the union
_EVENT_LAYOUTS = {"x86_64": "=IQ", "amd64": "=IQ", "aarch64": "=I4xQ", "arm64": "=I4xQ"}

ReadFunction = Callable[[int, int], bytes]
WriteFunction = Callable[[int, object], int]


def gil_enabled() -> bool:
    """Does this interpreter run with a GIL now (False on free-threaded 3.13t with PYTHON_GIL=0)?"""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def _libc() -> ctypes.PyDLL | None:
    try:
        return ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL is kept during the call
    except OSError:
        return None


def held_io_functions() -> tuple[ReadFunction, WriteFunction] | None:
    """A (read, write) pair keeping the GIL, for the one thread that will use it (the read
    buffer is its own); None where holding the GIL is pointless or impossible."""
    if not gil_enabled():
        return None
    libc = _libc()
    if libc is None:
        return None
    c_read, c_write = libc.read, libc.write
    get_errno = ctypes.get_errno
    buffer = ctypes.create_string_buffer(HELD_READ_SIZE)
    os_read, os_write = os.read, os.write

    def read(fd: int, size: int) -> bytes:
        if not 0 <= size <= HELD_READ_SIZE:
            return os_read(fd, size)
        got = c_read(fd, buffer, size)
        if got >= 0:
            return buffer[:got]
        code = get_errno()
        raise OSError(code, os.strerror(code))  # (EAGAIN: BlockingIOError, as os.read raises)

    def write(fd: int, data: object) -> int:
        if type(data) is not bytes or len(data) > HELD_WRITE_SIZE:
            return os_write(fd, data)  # type: ignore[arg-type]
        sent = c_write(fd, data, len(data))
        if sent >= 0:
            return sent
        code = get_errno()
        raise OSError(code, os.strerror(code))

    return read, write


def held_poll(epoll_fd: int) -> Callable[[], list[tuple[int, int]]] | None:
    """`epoll.poll(0)` of `epoll_fd` that keeps the GIL, for the one thread that owns the
    epoll: the same [(fd, mask), ...] list; None where it cannot or need not be done."""
    layout = _EVENT_LAYOUTS.get(platform.machine().lower())
    if layout is None or not gil_enabled():
        return None
    libc = _libc()
    if libc is None:
        return None
    c_epoll_wait = libc.epoll_wait
    get_errno = ctypes.get_errno
    event = struct.Struct(layout)
    size = event.size
    iter_unpack = event.iter_unpack
    buffer = ctypes.create_string_buffer(size * MAX_EVENTS)

    def poll() -> list[tuple[int, int]]:
        count = c_epoll_wait(epoll_fd, buffer, MAX_EVENTS, 0)
        if count > 0:
            return [(data & 0xFFFFFFFF, mask) for mask, data in iter_unpack(buffer[:count * size])]
        if count == 0:
            return []
        code = get_errno()
        raise OSError(code, os.strerror(code))  # (EINTR: InterruptedError, as epoll.poll raises)

    return poll
