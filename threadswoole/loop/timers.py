"""A timer heap for one event loop: `tick` (periodic), `after` (one-shot), `clear`, ids from 1.

Cancelled timers stay in the heap and are skipped when they surface (lazy deletion), so
`clear` is O(1); the heap is compacted when more than half of it is dead.

A timer is the user's (Server.tick/after, Timer.*) or the framework's (heartbeat, drains,
watchdogs). The user's API sees and clears only the user's: `Timer.list()` in a fresh worker
is empty, and no user call can cancel a framework timer.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any, Callable

# Timer ids are unique in the process, not per loop: in THREAD mode every worker thread has
# its own loop, and clear_timer() with another worker's id must fail (contract §17 #42).
# A lock, not itertools.count: creating a timer is not the hot path, and the lock is
# correct on free-threaded builds too.
_id_lock = threading.Lock()
_next_id = 1


def _new_id() -> int:
    global _next_id
    with _id_lock:
        timer_id = _next_id
        _next_id += 1
    return timer_id


class _Timer:
    __slots__ = ("id", "when", "interval", "callback", "args", "periodic", "cancelled")

    def __init__(self, timer_id: int, when: float, interval: float, callback: Callable[..., Any], args: tuple, periodic: bool) -> None:
        self.id = timer_id
        self.when = when
        self.interval = interval
        self.callback = callback
        self.args = args
        self.periodic = periodic
        self.cancelled = False

    def __lt__(self, other: "_Timer") -> bool:
        return (self.when, self.id) < (other.when, other.id)


class TimerHeap:
    """Timers of one loop; only the loop's own thread touches it."""

    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._live: dict[int, _Timer] = {}
        self._user: set[int] = set()  # ids of the live timers the user's code set

    def __len__(self) -> int:
        return len(self._live)

    def add(self, ms: float, callback: Callable[..., Any], args: tuple, periodic: bool, user: bool = False) -> int:
        timer_id = _new_id()
        interval = ms / 1000.0
        timer = _Timer(timer_id, time.monotonic() + interval, interval, callback, args, periodic)
        self._live[timer_id] = timer
        if user:
            self._user.add(timer_id)
        heapq.heappush(self._heap, timer)
        return timer_id

    def clear(self, timer_id: int, user: bool = False) -> bool:
        """Cancel a timer; with `user`, only one of the user's (False for any other id)."""
        if user and timer_id not in self._user:
            return False
        timer = self._live.pop(timer_id, None)
        if timer is None:
            return False
        self._user.discard(timer_id)
        timer.cancelled = True
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._heap = [t for t in self._heap if not t.cancelled]
            heapq.heapify(self._heap)
        return True

    def clear_all(self) -> None:
        """Every timer, the framework's included (the loop is going away)."""
        for timer in self._live.values():
            timer.cancelled = True
        self._live.clear()
        self._user.clear()
        self._heap.clear()

    def clear_user(self) -> None:
        """Every timer the user's code set (Timer.clear_all)."""
        for timer_id in list(self._user):
            self.clear(timer_id)

    def user_ids(self) -> list[int]:
        return sorted(self._user)

    def user_exists(self, timer_id: int) -> bool:
        return timer_id in self._user

    @property
    def user_count(self) -> int:
        return len(self._user)

    def next_delay(self, now: float) -> float | None:
        """Seconds until the earliest live timer (0 if due), or None when there is none."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        if not heap:
            return None
        return max(0.0, heap[0].when - now)

    def pop_due(self, now: float) -> list[_Timer]:
        """Remove and return the timers due at `now`; periodic ones are re-armed first."""
        heap = self._heap
        due: list[_Timer] = []
        while heap and (heap[0].cancelled or heap[0].when <= now):
            timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            due.append(timer)
            if timer.periodic:
                # Re-arm from the scheduled time, not from now, so a tick does not drift;
                # if the loop fell far behind, skip the missed beats instead of bursting.
                timer.when += timer.interval
                if timer.when <= now:
                    timer.when = now + timer.interval
                heapq.heappush(heap, timer)
            else:
                self._live.pop(timer.id, None)
                self._user.discard(timer.id)
        return due

    @staticmethod
    def fire(timer: _Timer) -> None:
        """Run one due timer's callback (tick gets its id first, after gets only its args)."""
        if timer.cancelled:
            return
        if timer.periodic:
            timer.callback(timer.id, *timer.args)
        else:
            timer.callback(*timer.args)
