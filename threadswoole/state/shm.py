"""Shared-memory segments: named after the master's pid, unlinked exactly once, swept after a crash.

Segments are created by the master before any fork, so every child inherits the mapping. We
keep them away from multiprocessing's resource tracker (it would unlink a segment when the
process that created it exits, or complain at shutdown) and do our own bookkeeping instead:
the name carries the creating master's pid, the master unlinks at shutdown, and the next
server start unlinks segments whose master is no longer alive (a kill -9 of the whole tree).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from multiprocessing import shared_memory
from typing import Iterator

PREFIX = "threadswoole_"
SHM_DIR = "/dev/shm"


@contextlib.contextmanager
def _without_resource_tracker() -> Iterator[None]:
    # Before 3.13 SharedMemory(create=True) registers with the resource tracker, which starts a
    # tracker process (an extra child of the master). Creation happens in the master before
    # any thread exists, so swapping the function out for the call is safe.
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    resource_tracker.register = lambda name, rtype: None  # type: ignore[assignment]
    try:
        yield
    finally:
        resource_tracker.register = register  # type: ignore[assignment]


def create(purpose: str, size: int) -> shared_memory.SharedMemory:
    """A new zero-filled segment named threadswoole_<pid>_<purpose>_<random>."""
    name = f"{PREFIX}{os.getpid()}_{purpose}_{secrets.token_hex(4)}"
    if sys.version_info >= (3, 13):
        segment = shared_memory.SharedMemory(name=name, create=True, size=size, track=False)
    else:
        with _without_resource_tracker():
            segment = shared_memory.SharedMemory(name=name, create=True, size=size)
    return segment


def pid_alive(pid: int) -> bool:
    """Does process `pid` exist (signal 0: a process of another user counts as alive)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Unlink segments left by masters that died without cleaning up; returns their names."""
    removed: list[str] = []
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return removed
    for entry in entries:
        if not entry.startswith(PREFIX):
            continue
        pid_text = entry[len(PREFIX) :].split("_", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            os.unlink(os.path.join(SHM_DIR, entry))
            removed.append(entry)
        except OSError:
            pass
    return removed


def segments_of(pid: int) -> list[str]:
    """Names of the segments a master with this pid created (tests use it to check cleanup)."""
    try:
        return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"{PREFIX}{pid}_"))
    except OSError:
        return []


def destroy(segment: shared_memory.SharedMemory) -> bool:
    """Close and unlink (master only, once, at shutdown). False when the mapping could not be
    closed because a view of it is still alive (a bug: every view must be released first)."""
    closed = True
    try:
        segment.close()
    except (BufferError, OSError) as exc:
        closed = False
        logging.getLogger("threadswoole").warning("shared segment %s not closed: %s", segment.name, exc)
    try:
        # shm_unlink directly: SharedMemory.unlink() before 3.13 would talk to the tracker.
        shared_memory._posixshmem.shm_unlink(segment._name)  # type: ignore[attr-defined]
    except FileNotFoundError:
        pass
    return closed
