"""`threadswoole.Lock`: Swoole's Lock in shared memory, for worker processes and threads alike.

    lock = Lock(Lock.MUTEX)          # before server.start()
    with lock:                       # lock() ... unlock()
        ...

Types (Swoole's numbers): MUTEX (3, the default) and SPINLOCK (5, the same lock here: a spin in
Python buys nothing) are one robust process-shared mutex; RWLOCK (1) adds `lock_read` /
`trylock_read` for shared holders and prefers readers (as glibc's default rwlock). FILELOCK (2)
and SEM (4) raise ValueError, as in Swoole 5 ("no longer supported, please use mutex lock").

Holders are threads: a lock taken by one thread is released by that thread (`unlock` from another
returns False with EPERM), and taking it again from the holding thread returns False with
EDEADLK instead of hanging. Failures return False and set `err_code` and `get_last_error()`.

A holder that dies (`kill -9` of its process, or its thread ends) does not block the others
forever. MUTEX: the kernel hands the mutex to the next locker with EOWNERDEAD (robust mutex);
`lock()` returns True, logs a warning, and the data it protects is whatever the dead holder left.
RWLOCK: the state (writer, up to READERS reader threads with their counts) lives under a robust
guard mutex; a waiter that has slept PURGE_AFTER seconds without progress checks the holders in
/proc and drops those that are gone, then takes the lock. Waiting is futex(2) on a sequence word
bumped by every unlock; waits are cut in slices so Python signal handlers keep running.
"""

from __future__ import annotations

import logging
import struct
import time
from threading import get_ident
from typing import Any

from threadswoole import _context
from threadswoole._aliases import alias
from threadswoole.state.user_segments import Segment, allocate_slot, require_before_start
from threadswoole.sharing.native_sync import (
    EBUSY,
    EDEADLK,
    EOWNERDEAD,
    EPERM,
    ETIMEDOUT,
    MUTEX_BYTES,
    futex_wait,
    futex_wake,
    holder_alive,
    init_mutex,
    mutex_consistent,
    mutex_acquire,
    mutex_lock_interruptible,
    mutex_lock_timeout,
    mutex_trylock,
    mutex_unlock,
    thread_token,
)
from threadswoole.errors import StateError

log = logging.getLogger("threadswoole")

SWOOLE_RWLOCK, SWOOLE_FILELOCK, SWOOLE_MUTEX, SWOOLE_SEM, SWOOLE_SPINLOCK = 1, 2, 3, 4, 5
READERS = 64  # reader threads that can hold one RWLOCK at once (more wait, as if it were busy)
PURGE_AFTER = 0.2  # seconds a waiter sleeps before it checks whether the holders still live
_SLICE = 0.5  # seconds per sleep of an unbounded wait

# RWLOCK words after the guard mutex; then READERS entries of (holder token, hold count)
_WRITER, _WAITERS, _SEQUENCE, _RECOVERED = range(4)
_ENTRIES_AT = MUTEX_BYTES + 32
_ENTRIES = struct.Struct(f"<{2 * READERS}q")


class Lock:
    """A mutex or read-write lock shared by every process and thread of a server."""

    RWLOCK, FILELOCK, MUTEX, SEM, SPINLOCK = SWOOLE_RWLOCK, SWOOLE_FILELOCK, SWOOLE_MUTEX, SWOOLE_SEM, SWOOLE_SPINLOCK

    def __init__(self, type: int = SWOOLE_MUTEX) -> None:  # noqa: A002 - Swoole's parameter name
        if not isinstance(type, int) or isinstance(type, bool):
            raise TypeError(f"the lock type is Lock.MUTEX, RWLOCK or SPINLOCK, not {type.__class__.__name__}")
        if type in (SWOOLE_FILELOCK, SWOOLE_SEM):
            raise ValueError("FILELOCK and SEM locks are no longer supported (as in Swoole 5): use Lock.MUTEX")
        if type not in (SWOOLE_MUTEX, SWOOLE_SPINLOCK, SWOOLE_RWLOCK):
            raise ValueError(f"unknown lock type {type} (Lock.RWLOCK=1, MUTEX=3, SPINLOCK=5)")
        require_before_start("Lock()")
        self.type = type
        self.err_code = 0
        self._destroyed = False
        self._rw = type == SWOOLE_RWLOCK
        self._segment: Segment
        self._segment, self._offset = allocate_slot(_ENTRIES_AT + _ENTRIES.size if self._rw else MUTEX_BYTES)
        self._mutex = self._segment.address + self._offset
        self._words = self._segment.words
        self._base = (self._offset + MUTEX_BYTES) // 8  # word index of _WRITER
        self._entry_word = (self._offset + _ENTRIES_AT) // 8  # word index of reader entry 0
        self._sequence_address = self._mutex + MUTEX_BYTES + 8 * _SEQUENCE
        self._sequence_index = (self._offset + MUTEX_BYTES + 8 * _SEQUENCE) // 4
        init_mutex(self._mutex)

    # -- results --------------------------------------------------------------------------
    def _fail(self, code: int) -> bool:
        self.err_code = code
        _context.current().last_error = code
        return False

    def _mutex_result(self, result: int) -> bool:
        if result == 0:
            return True
        if result == EOWNERDEAD:
            mutex_consistent(self._mutex)
            log.warning("Lock: its holder died while holding it; the next locker has it now")
            return True
        return self._fail(result)

    def _check(self) -> None:
        if self._destroyed:
            raise StateError("the lock has been destroyed")

    # -- the API --------------------------------------------------------------------------
    def lock(self) -> bool:
        """Take the lock (the write side of an RWLOCK), waiting as long as it takes."""
        self._check()
        if self._rw:
            return self._rw_acquire(write=True, deadline=None, trying=False)
        return self._mutex_result(mutex_lock_interruptible(self._mutex, _SLICE))

    def trylock(self) -> bool:
        """Take the lock if it is free right now; False (EBUSY) otherwise."""
        self._check()
        if self._rw:
            return self._rw_acquire(write=True, deadline=None, trying=True)
        return self._mutex_result(mutex_trylock(self._mutex))

    def lock_wait(self, timeout: float = 1.0) -> bool:
        """Take the lock, waiting at most `timeout` seconds; False (ETIMEDOUT) after that."""
        self._check()
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise TypeError(f"timeout is a number of seconds, not {type(timeout).__name__}")
        deadline = time.monotonic() + max(0.0, timeout)
        if self._rw:
            return self._rw_acquire(write=True, deadline=deadline, trying=False)
        result = mutex_trylock(self._mutex)
        while result == EBUSY or result == ETIMEDOUT:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._fail(ETIMEDOUT)
            result = mutex_lock_timeout(self._mutex, min(remaining, _SLICE))
        return self._mutex_result(result)

    def lock_read(self) -> bool:
        """Take a shared hold of an RWLOCK (the lock itself for the other types)."""
        self._check()
        if self._rw:
            return self._rw_acquire(write=False, deadline=None, trying=False)
        return self.lock()

    def trylock_read(self) -> bool:
        self._check()
        if self._rw:
            return self._rw_acquire(write=False, deadline=None, trying=True)
        return self.trylock()

    def unlock(self) -> bool:
        """Release this thread's hold; False (EPERM) if it holds none."""
        self._check()
        if self._rw:
            return self._rw_release()
        result = mutex_unlock(self._mutex)
        return True if result == 0 else self._fail(result)

    def destroy(self) -> None:
        """Stop using the lock in this process (its memory goes with the server's segments)."""
        self._check()
        self._destroyed = True

    def __enter__(self) -> "Lock":
        if not self.lock():
            raise StateError(f"could not take the lock: {self.err_code} (EDEADLK: this thread already holds it)")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.unlock()

    lockwait = alias("lock_wait")
    errCode = alias("err_code")

    def __reduce__(self) -> Any:
        raise TypeError("a Lock is shared by inheritance (fork), it cannot be pickled")

    def __repr__(self) -> str:
        names = {SWOOLE_MUTEX: "MUTEX", SWOOLE_SPINLOCK: "SPINLOCK", SWOOLE_RWLOCK: "RWLOCK"}
        return f"<threadswoole.Lock {names[self.type]}{' destroyed' if self._destroyed else ''}>"

    # -- RWLOCK ---------------------------------------------------------------------------
    def _guard(self) -> None:
        result = mutex_acquire(self._mutex)  # anyone holds it for microseconds only: no slices
        if result == EOWNERDEAD:
            mutex_consistent(self._mutex)
            self._purge()
        elif result:
            raise OSError(result, "Lock guard failed")

    def _entries(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(Guard held.) The reader entries: (tokens, counts)."""
        try:  # a subscript: dict.get locks the dict on free-threaded 3.13 (see table_paths.py)
            view = self._segment.thread_views[get_ident()]
        except KeyError:
            view = self._segment.new_view()
        entries = _ENTRIES.unpack_from(view, self._offset + _ENTRIES_AT)
        return entries[0::2], entries[1::2]

    def _rw_acquire(self, write: bool, deadline: float | None, trying: bool) -> bool:
        token, words, base, entry = thread_token(), self._words, self._base, self._entry_word
        waiting, slept = False, 0.0
        while True:
            self._guard()
            try:
                if waiting:
                    words[base + _WAITERS] -= 1
                    waiting = False
                if slept >= PURGE_AFTER:
                    self._purge()
                    slept = 0.0
                tokens, counts = self._entries()
                writer = words[base + _WRITER]
                mine = tokens.index(token) if token in tokens else -1
                if writer == token or (write and mine >= 0):
                    return self._fail(EDEADLK)  # this thread holds it already (and no upgrades)
                if not writer:
                    if write and not any(counts):
                        words[base + _WRITER] = token
                        return True
                    if not write and mine >= 0:
                        words[entry + 2 * mine + 1] += 1  # a reader may hold it several times
                        return True
                    if not write and 0 in tokens:
                        free = tokens.index(0)
                        words[entry + 2 * free + 1] = 1
                        words[entry + 2 * free] = token
                        return True
                if trying:
                    return self._fail(EBUSY)
                remaining = _SLICE if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return self._fail(ETIMEDOUT)
                sequence = self._segment.uints[self._sequence_index]
                words[base + _WAITERS] += 1
                waiting = True
            finally:
                mutex_unlock(self._mutex)
            started = time.monotonic()
            futex_wait(self._sequence_address, sequence, min(remaining, PURGE_AFTER))
            slept += time.monotonic() - started

    def _rw_release(self) -> bool:
        token, words, base, entry = thread_token(), self._words, self._base, self._entry_word
        self._guard()
        try:
            if words[base + _WRITER] == token:
                words[base + _WRITER] = 0
            else:
                tokens, counts = self._entries()
                if token not in tokens:
                    return self._fail(EPERM)
                mine = tokens.index(token)
                if counts[mine] <= 1:
                    words[entry + 2 * mine] = 0  # the entry is free again
                    words[entry + 2 * mine + 1] = 0
                else:
                    words[entry + 2 * mine + 1] -= 1
            self._bump()
            waiters = words[base + _WAITERS]
        finally:
            mutex_unlock(self._mutex)
        if waiters:
            futex_wake(self._sequence_address, 0x7FFFFFFF)
        return True

    def _bump(self) -> None:
        uints = self._segment.uints
        uints[self._sequence_index] = (uints[self._sequence_index] + 1) & 0xFFFF_FFFF

    def _purge(self) -> None:
        """(Guard held.) Drop the holds of threads that no longer exist, and entries left
        half-written by a thread that died holding the guard."""
        words, base, entry = self._words, self._base, self._entry_word
        dropped = 0
        writer = words[base + _WRITER]
        if writer and not holder_alive(writer):
            words[base + _WRITER] = 0
            dropped += 1
        tokens, counts = self._entries()
        for slot in range(READERS):
            holder, count = tokens[slot], counts[slot]
            if (holder or count) and (not holder or count <= 0 or not holder_alive(holder)):
                dropped += count > 0
                words[entry + 2 * slot] = 0
                words[entry + 2 * slot + 1] = 0
        if dropped:
            words[base + _RECOVERED] += dropped
            self._bump()
            log.warning("Lock: %d holder(s) of a read-write lock died; their holds were dropped", dropped)
