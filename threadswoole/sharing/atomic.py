"""`threadswoole.Atomic` (unsigned 32-bit) and `Atomic.Long` (signed 64-bit): counters in shared memory.

Create them before `server.start()`; every worker process, task worker, user process and thread
then sees the same value. Arithmetic wraps like the C type (Swoole's behaviour): `Atomic(0).sub(1)`
is 4294967295, `Atomic.Long(2**63 - 1).add(1)` is -2**63. Values given to the constructor, `set`
and `cmpset` must fit the type (ValueError); steps may be any int.

Each counter is one word beside a robust mutex (see native_sync.py for why a mutex and not a
semaphore); a read is a plain aligned load, every change takes the mutex: two ctypes calls. A
process killed in the middle leaves the word either old or new, never torn; the next caller gets
the mutex back from the kernel (EOWNERDEAD) and goes on.

`wait(timeout)` / `wakeup(n)` (api.md §18.11): Swoole's "event" use of the counter. `wakeup(n)`
sets the value to 1 if it is 0 and wakes up to n waiters; `wait` returns True at once when the
value is not 0 (taking it back to 0 when it is 1, as Swoole's compare-and-set does), True when a
`wakeup` chose it, or True if the value is not 0 when the timeout ends; False on timeout. A
negative timeout waits without limit. Waiters sleep in futex(2) on a sequence word that every
`wakeup` bumps, so no wake-up is lost between the check and the sleep.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from threadswoole.state.user_segments import allocate_slot, require_before_start
from threadswoole.sharing.native_sync import EBUSY, EDEADLK, EOWNERDEAD, MUTEX_BYTES, futex_wait, futex_wake, init_mutex, mutex_consistent, mutex_lock, mutex_trylock, mutex_unlock
from threadswoole.errors import StateError

log = logging.getLogger("threadswoole")

_VALUE, _WAITERS, _TICKETS = 0, 2, 3  # words after the mutex; word 1 holds the futex sequence
_SEQUENCE_AT = MUTEX_BYTES + 8
_WAIT_SLICE = 1.0  # seconds per futex sleep, so Python signal handlers run in between


class Atomic:
    """An unsigned 32-bit integer shared by every process and thread of a server."""

    _LOW, _HIGH = 0, (1 << 32) - 1
    _KIND = "unsigned 32-bit"
    Long: type["Atomic"]  # set below the class: Atomic.Long(value)

    def __init__(self, value: int = 0) -> None:
        require_before_start(f"{type(self).__name__}()")
        self._check_value(value, "value")
        self._segment, offset = allocate_slot()
        self._mutex = self._segment.address + offset
        self._index = (offset + MUTEX_BYTES) // 8 + _VALUE
        self._words = self._segment.words
        self._sequence_index = (offset + _SEQUENCE_AT) // 4
        init_mutex(self._mutex)
        self._words[self._index] = value

    # -- checks ---------------------------------------------------------------------------
    def _check_value(self, value: Any, name: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} is an int, not {type(value).__name__}")
        if not self._LOW <= value <= self._HIGH:
            raise ValueError(f"{name} {value} does not fit an {self._KIND} atomic ({self._LOW}..{self._HIGH})")

    @staticmethod
    def _check_step(step: Any) -> None:
        if not isinstance(step, int) or isinstance(step, bool):
            raise TypeError(f"the step is an int, not {type(step).__name__}")

    def _wrap(self, value: int) -> int:
        return value & 0xFFFF_FFFF

    def _lock(self) -> None:
        result = mutex_trylock(self._mutex)
        if result:
            self._locked_after(result)

    def _locked_after(self, result: int) -> None:
        """The slow path of `_lock`: wait for the mutex, or take it over from a dead holder."""
        if result == EBUSY:
            result = mutex_lock(self._mutex)
        if result:
            if result == EDEADLK:
                raise StateError("an Atomic operation was re-entered by the thread running one (from a signal handler?)")
            if result != EOWNERDEAD:
                raise OSError(result, "Atomic lock failed")
            mutex_consistent(self._mutex)  # the word is old or new, never torn: nothing to repair
            log.warning("Atomic: a process died in the middle of an operation; the value is %d", self._words[self._index])

    # -- the API --------------------------------------------------------------------------
    def add(self, add_value: int = 1) -> int:
        """Add and return the new value (wrapping like the C type)."""
        if type(add_value) is not int:
            self._check_step(add_value)
        mutex, words, index = self._mutex, self._words, self._index
        result = mutex_trylock(mutex)
        if result:
            self._locked_after(result)
        try:
            value = self._wrap(words[index] + add_value)
            words[index] = value
        finally:
            mutex_unlock(mutex)
        return value

    def sub(self, sub_value: int = 1) -> int:
        """Subtract and return the new value (wrapping like the C type)."""
        if type(sub_value) is not int:
            self._check_step(sub_value)
        return self.add(-sub_value)

    def get(self) -> int:
        return self._words[self._index]

    def set(self, value: int) -> None:
        self._check_value(value, "value")
        self._lock()
        try:
            self._words[self._index] = value
        finally:
            mutex_unlock(self._mutex)

    def cmpset(self, cmp_value: int, new_value: int) -> bool:
        """Set `new_value` if the value is `cmp_value`; whether it did."""
        self._check_value(cmp_value, "cmp_value")
        self._check_value(new_value, "new_value")
        self._lock()
        try:
            if self._words[self._index] != cmp_value:
                return False
            self._words[self._index] = new_value
            return True
        finally:
            mutex_unlock(self._mutex)

    def wait(self, timeout: float = 1.0) -> bool:
        """Wait for a `wakeup` (see the module docstring); False on timeout."""
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise TypeError(f"timeout is a number of seconds, not {type(timeout).__name__}")
        words, base, uints = self._words, self._index - _VALUE, self._segment.uints
        deadline = None if timeout < 0 else time.monotonic() + timeout
        self._lock()
        try:
            if self._take_value():
                return True
            sequence = uints[self._sequence_index]
            words[base + _WAITERS] += 1
        finally:
            mutex_unlock(self._mutex)
        try:
            while True:
                remaining = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
                if remaining <= 0:
                    return self._claim()
                futex_wait(self._mutex + _SEQUENCE_AT, sequence, remaining)
                if uints[self._sequence_index] != sequence:  # a wakeup: was it for us?
                    sequence = uints[self._sequence_index]
                    if self._claim():
                        return True
        finally:
            self._lock()
            try:
                waiters = words[base + _WAITERS] = words[base + _WAITERS] - 1
                words[base + _TICKETS] = min(words[base + _TICKETS], waiters)
            finally:
                mutex_unlock(self._mutex)

    def _claim(self) -> bool:
        """Take one of the wakeup tickets, or the value; whether we got either."""
        self._lock()
        try:
            tickets = self._words[self._index - _VALUE + _TICKETS]
            if tickets > 0:
                self._words[self._index - _VALUE + _TICKETS] = tickets - 1
                self._take_value()
                return True
            return self._take_value()
        finally:
            mutex_unlock(self._mutex)

    def _take_value(self) -> bool:
        """(Locked.) Is the value non-zero? A 1 is taken back to 0, as Swoole's cmp_set(1, 0)."""
        value = self._words[self._index]
        if value == 1:
            self._words[self._index] = 0
        return value != 0

    def wakeup(self, n: int = 1) -> bool:
        """Set the value to 1 if it is 0 and wake up to `n` waiters; always True."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"n is an int, not {type(n).__name__}")
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        words, base = self._words, self._index - _VALUE
        self._lock()
        try:
            if words[self._index] == 0:
                words[self._index] = 1
            waiters = words[base + _WAITERS]
            words[base + _TICKETS] = min(waiters, words[base + _TICKETS] + n)
            uints = self._segment.uints
            uints[self._sequence_index] = (uints[self._sequence_index] + 1) & 0xFFFF_FFFF
        finally:
            mutex_unlock(self._mutex)
        if waiters:
            futex_wake(self._mutex + _SEQUENCE_AT, n)
        return True

    def __reduce__(self) -> Any:
        raise TypeError("an Atomic is shared by inheritance (fork), it cannot be pickled")

    def __repr__(self) -> str:
        return f"<threadswoole.{type(self).__qualname__} {self.get()}>"


class AtomicLong(Atomic):
    """Swoole's Atomic\\Long: a signed 64-bit integer shared by every process and thread."""

    _LOW, _HIGH = -(1 << 63), (1 << 63) - 1
    _KIND = "signed 64-bit"

    def _wrap(self, value: int) -> int:
        return ((value + (1 << 63)) & 0xFFFF_FFFF_FFFF_FFFF) - (1 << 63)


AtomicLong.__qualname__ = "Atomic.Long"
Atomic.Long = AtomicLong
