"""User shared-memory segments (Table, Atomic, Lock): created before any fork, unlinked exactly once.

A segment is made through the server's `_shm.create`, so it is named threadswoole_<pid>_<purpose>_*
after the process that created it and the next server start sweeps it if that process died
without cleaning up (`kill -9` of the whole tree). Every process that uses it inherited the
mapping through fork; the name is only needed by the sweep.

Lifetime. The creating process unlinks the name once: at server shutdown (`release_segments()`,
called by the mode driver after on_shutdown), at `destroy()`, or at interpreter exit, whichever
comes first. Unlinking keeps the mapping, so a Table is still readable in the master after
`start()` returns; the memory goes when the last process unmaps it (`destroy()`, exit). Other
processes never unlink; `destroy()` or exit only unmaps their own copy. One exception: a
daemonized master is a grandchild of the process that made the tables (which has exited), so at
shutdown the master also unlinks segments whose creator is gone.

Views. `struct.pack_into`/`unpack_from` on a memoryview change the view's export count, and
making or releasing a view (a slice, a cast) changes the count of the buffer beneath; free-threaded
CPython 3.13 updates both without synchronisation (CPython gh-127716, see server/_state.py). So:
each thread gets its own byte view (`thread_views`, made and released under a lock, never
released by a dying thread) for struct work, and the shared word views (`words`, `uints`) are
only indexed, never sliced. Slicing the mmap itself (`mapping[a:b]`, `mapping[a:b] = data`)
touches no export count either: the Table's hot paths copy rows in and out that way, from any
thread, with no per-thread view to look up.

Small objects (Atomic, Lock) take slots of shared "sync" segments of 64 slots (`allocate_slot`),
so a program with many counters does not hold one file descriptor per counter.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import threading
from typing import Any

from threadswoole import _context
from threadswoole.errors import StateError
from threadswoole.state import shm as _shm

log = logging.getLogger("threadswoole")

_registry: list["Segment"] = []
_registry_lock = threading.Lock()


def require_before_start(what: str) -> None:
    """Raise StateError inside a running server: shared segments are made before `start()`,
    so that every worker, task worker and user process inherits them."""
    role = _context.current().role
    if role != _context.ROLE_NONE:
        raise StateError(f"{what} must happen before server.start() (this is the {role}): the workers share it by inheriting it")


class Segment:
    """One mapping: its base address for the locks, per-thread byte views, word views, lifetime."""

    def __init__(self, purpose: str, size: int) -> None:
        self._segment = _shm.create(purpose, size)
        self.name: str = self._segment.name
        self.size = size
        self.creator_pid = os.getpid()
        self.unlinked = False
        self.closed = False
        self._lock = threading.Lock()
        buffer = self._segment.buf
        anchor = ctypes.c_char.from_buffer(buffer)
        self.address: int = ctypes.addressof(anchor)
        del anchor  # gives the export back; the address stays valid while the segment is mapped
        self.mapping = buffer.obj  # the mmap: slicing it copies bytes out or in, no view made
        self.words = buffer.cast("q")  # int64 words, indexed only
        self.doubles = buffer.cast("d")  # the same words as float64, indexed only
        self.uints = buffer.cast("I")  # uint32 words (futexes), indexed only
        self.thread_views: dict[int, memoryview] = {}  # thread ident -> that thread's byte view
        with _registry_lock:
            _registry.append(self)

    def new_view(self) -> memoryview:
        """The calling thread's byte view (made once per thread ident, under the lock)."""
        with self._lock:
            if self.closed:
                raise StateError("the shared segment has been destroyed")
            ident = threading.get_ident()
            view = self.thread_views.get(ident)
            if view is None:
                view = self.thread_views[ident] = self._segment.buf[:]
            return view

    def unlink(self, inherited: bool = False) -> None:
        """Remove the name (once; by the creator, or with `inherited` by the process that took
        over from it); the mapping stays usable."""
        with self._lock:
            if self.unlinked or (os.getpid() != self.creator_pid and not inherited):
                return
            self.unlinked = True
        try:
            os.unlink(os.path.join(_shm.SHM_DIR, self.name))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unmap this process's copy (and unlink first in the creator). Views of other threads
        are released here: the caller guarantees no thread is inside an operation."""
        self.unlink()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            views = [*self.thread_views.values(), self.words, self.doubles, self.uints]
            self.thread_views.clear()
            try:
                for view in views:
                    view.release()
                self._segment.close()
            except BufferError as exc:  # a view is still exported: a thread is mid-operation
                log.warning("shared segment %s still in use, left mapped: %s", self.name, exc)
        with _registry_lock:
            if self in _registry:
                _registry.remove(self)

    def reset_lock_after_fork(self) -> None:
        self._lock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError("shared segments are inherited through fork, they cannot be pickled")


SLOT_BYTES = 128  # an Atomic or a Lock: a robust mutex and a few words
_SLOTS_PER_ARENA = 64
_arena: Segment | None = None
_arena_used = 0
_arena_lock = threading.Lock()


def allocate_slot(size: int = SLOT_BYTES) -> tuple[Segment, int]:
    """`size` bytes (rounded up to SLOT_BYTES) of zeroed shared memory in a segment this process
    made: (segment, byte offset). Atomics and Locks are small and may be many, so they share
    "sync" segments of 64 slots."""
    global _arena, _arena_used
    slots = -(-size // SLOT_BYTES)
    if slots > _SLOTS_PER_ARENA:
        raise ValueError(f"a slot is at most {_SLOTS_PER_ARENA * SLOT_BYTES} bytes")
    with _arena_lock:
        arena = _arena
        if arena is None or arena.closed or arena.creator_pid != os.getpid() or _arena_used + slots > _SLOTS_PER_ARENA:
            arena = _arena = Segment("sync", _SLOTS_PER_ARENA * SLOT_BYTES)
            _arena_used = 0
        offset = _arena_used * SLOT_BYTES
        _arena_used += slots
        return arena, offset


def release_segments() -> None:
    """Server shutdown, in the master: unlink every segment this process created, and those whose
    creator is gone (a `daemonize` master is a grandchild of the process that made its tables).
    Their names leave /dev/shm; the mappings stay until destroy() or exit."""
    with _registry_lock:
        segments = list(_registry)
    for segment in segments:
        if segment.creator_pid == os.getpid():
            segment.unlink()
        elif not _shm.pid_alive(segment.creator_pid):
            segment.unlink(inherited=True)


def _at_exit() -> None:
    with _registry_lock:
        segments = list(_registry)
    for segment in segments:
        try:
            segment.close()
        except Exception:  # interpreter exit: report, never raise
            log.exception("closing shared segment %s at exit", segment.name)


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    global _registry_lock, _arena_lock
    _registry_lock = threading.Lock()
    _arena_lock = threading.Lock()
    for segment in _registry:
        segment.reset_lock_after_fork()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
