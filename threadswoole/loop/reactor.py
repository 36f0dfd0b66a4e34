"""The event loop: one `select.epoll` per thread, a timer heap, a defer queue and a wake-up fd.

A Reactor belongs to the thread that runs it (STYLE 5): only that thread registers fds or
touches the timers. Other threads hand work in with `post()`, which appends to a queue and
writes one byte to a socketpair the loop watches. We use `select.epoll` directly rather than
`selectors.EpollSelector`: the selector builds a SelectorKey result per event; with 50
ready sockets it costs 500 ns per ready fd against 270 ns here, about 7% of the server's
own Python time per echo request.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import signal
import socket
import threading
import time
from typing import Any, Callable

from threadswoole.loop.timers import TimerHeap

log = logging.getLogger("threadswoole")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
EPOLLRDHUP = select.EPOLLRDHUP

Handler = Callable[[int], Any]
PERIODIC_INTERVAL = 0.02  # seconds; how stale another process's view of our counters may be


# The wake-up fd a Reactor running in this process's main thread set (Reactor._watch_signals).
_loop_wakeup_fd = -1


def _forget_loop_wakeup() -> None:
    """In a forked child: the parent's loop does not run here, so its wake-up fd (inherited,
    and closed by the child's clean-up) must not stay set; the child's own loop sets its own."""
    global _loop_wakeup_fd
    if _loop_wakeup_fd == -1:
        return
    _loop_wakeup_fd = -1
    try:
        signal.set_wakeup_fd(-1)
    except (OSError, ValueError):  # (not the main thread: a fork from another thread)
        pass


os.register_at_fork(after_in_child=_forget_loop_wakeup)


class Reactor:
    """A single-threaded readiness loop; `run()` returns after `stop()` (callable from any thread)."""

    def __init__(self, name: str = "reactor") -> None:
        self.name = name
        self._epoll = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self.timers = TimerHeap()
        self._deferred: collections.deque[Callable[[], Any]] = collections.deque()
        self._posted: collections.deque[tuple[Callable[..., Any], tuple]] = collections.deque()
        # True while the loop is sure to look at the queue again before it next blocks; the loop
        # sets it False, under the lock, only after finding the queue empty on its way to sleep.
        self._awake = True
        self._wake_lock = threading.RLock()  # reentrant: a signal handler on this thread may post
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._wake_fd = self._wake_reader.fileno()
        self._epoll.register(self._wake_fd, EPOLLIN)
        self._handlers[self._wake_fd] = self._drain_wakeups
        self._running = False
        self._stopping = False
        self.before_poll: list[Callable[[], Any]] = []  # run before every poll (flush IPC batches)
        self.periodic: list[Callable[[], Any]] = []  # run every PERIODIC_INTERVAL while busy, and on going idle
        self.iterations = 0
        self._ready_poll: Callable[[], list[tuple[int, int]]] | None = None  # keep_gil_for_ready_polls
        self.clock = time.time()  # wall clock read once per iteration (connection timestamps)

    # -- registration (owner thread only) ---------------------------------------------------
    def add(self, fd: int, events: int, handler: Handler) -> None:
        self._epoll.register(fd, events)
        self._handlers[fd] = handler

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def remove(self, fd: int) -> None:
        """Unregister before the fd is closed (trio's rule: a closed fd may be reused at once)."""
        if self._handlers.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def has(self, fd: int) -> bool:
        return fd in self._handlers

    def keep_gil_for_ready_polls(self) -> bool:
        """Before run(), on a GIL build with several loop threads (THREAD mode): each iteration
        first polls with timeout 0 keeping the GIL (loop/held_io.py), and makes the poll that
        releases it only when nothing is ready. False where that is not available."""
        from threadswoole.loop.held_io import held_poll

        self._ready_poll = held_poll(self._epoll.fileno())
        return self._ready_poll is not None

    # -- timers and deferred calls (owner thread only) --------------------------------------
    # after/tick/clear_timer are the framework's timers (drains, heartbeat, watchdogs); the
    # user's API (Server.tick/after/clear_timer, Timer.*) uses the user_* methods, so that it
    # sees and cancels only what the user's code set.
    def after(self, ms: float, callback: Callable[..., Any], *args: Any) -> int:
        return self.timers.add(ms, callback, args, periodic=False)

    def tick(self, ms: float, callback: Callable[..., Any], *args: Any) -> int:
        return self.timers.add(ms, callback, args, periodic=True)

    def clear_timer(self, timer_id: int) -> bool:
        return self.timers.clear(timer_id)

    def user_after(self, ms: float, callback: Callable[..., Any], *args: Any) -> int:
        return self.timers.add(ms, callback, args, periodic=False, user=True)

    def user_tick(self, ms: float, callback: Callable[..., Any], *args: Any) -> int:
        return self.timers.add(ms, callback, args, periodic=True, user=True)

    def user_clear(self, timer_id: int) -> bool:
        """False unless `timer_id` is a live timer the user's code set on this loop."""
        return self.timers.clear(timer_id, user=True)

    def user_timer_count(self) -> int:
        """Timers the user's code set (a draining worker waits for these only)."""
        return self.timers.user_count

    def defer(self, callback: Callable[[], Any]) -> None:
        self._deferred.append(callback)

    # -- cross-thread -----------------------------------------------------------------------
    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` on the loop's thread soon; safe from any thread."""
        # The append and the flag are one step under the lock, and so is the loop's "queue
        # empty, going to sleep" (`_may_sleep`): a post either lands before that check (and is
        # seen) or finds the flag down and writes the wake-up byte. Only the first post after
        # the loop went to sleep pays the syscall. (A flag the loop cleared while *draining*
        # the queue could be raised again by a post the drain had already run, and the loop
        # then slept for good with every later post trusting the stale flag.)
        with self._wake_lock:
            self._posted.append((callback, args))
            if self._awake:
                return
            self._awake = True
        self._wake()

    def _may_sleep(self) -> bool:
        """On the loop's thread, before a poll that may block: False when posts are waiting."""
        with self._wake_lock:
            if self._posted:
                return False
            self._awake = False
            return True

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full, so the loop is certainly going to wake
        except OSError:
            pass  # closed during shutdown

    def _watch_signals(self) -> bool:
        """In the main thread: every signal writes a byte to this loop's wake-up socket
        (`signal.set_wakeup_fd`). The kernel may deliver a process's signal to any of its
        threads, and one delivered to another thread interrupts no `epoll_wait` here: without
        the byte a SIGTERM's Python handler (which only posts the stop) would wait for the
        loop's next event, forever on an idle server. True when the fd set is this loop's;
        someone else's (asyncio's, Process.signal's) is left in place: it wakes this thread too."""
        global _loop_wakeup_fd
        if threading.current_thread() is not threading.main_thread():
            return False
        mine = self._wake_writer.fileno()
        previous = signal.set_wakeup_fd(mine, warn_on_full_buffer=False)
        if previous not in (-1, _loop_wakeup_fd):
            try:
                signal.set_wakeup_fd(previous, warn_on_full_buffer=False)
                return False
            except (OSError, ValueError):
                signal.set_wakeup_fd(mine, warn_on_full_buffer=False)  # theirs is closed: ours
        _loop_wakeup_fd = mine
        return True

    def _unwatch_signals(self) -> None:
        global _loop_wakeup_fd
        _loop_wakeup_fd = -1
        current = signal.set_wakeup_fd(-1)
        if current != self._wake_writer.fileno():
            try:
                signal.set_wakeup_fd(current, warn_on_full_buffer=False)  # set since by someone else: theirs
            except (OSError, ValueError):
                pass

    def _drain_wakeups(self, _events: int) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _run_posted(self) -> None:
        posted = self._posted
        for _ in range(len(posted)):
            try:
                callback, args = posted.popleft()
            except IndexError:  # a call ran the loop once itself (run_once) and ran the rest
                break
            try:
                callback(*args)
            except Exception:
                log.exception("%s: posted call %r failed", self.name, callback)

    # -- the loop ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to return from `run()` after the current iteration; any thread."""
        self._stopping = True
        self._wake()

    @property
    def running(self) -> bool:
        return self._running

    def run(self) -> None:
        self._running = True
        self._stopping = False
        handlers = self._handlers
        poll = self._epoll.poll
        timers = self.timers
        heap = timers._heap
        deferred = self._deferred
        posted = self._posted
        before_poll = self.before_poll
        periodic = self.periodic
        may_sleep = self._may_sleep
        ready_poll = self._ready_poll
        monotonic = time.monotonic
        wall = time.time
        clock = self.clock = wall()
        last_periodic = clock
        dirty = False  # something ran since the periodic hooks (stats publication) last ran
        iterations = 0
        watching_signals = self._watch_signals()
        try:
            while not self._stopping:
                for hook in before_poll:
                    hook()
                if deferred or posted:
                    timeout = 0.0
                elif heap:
                    delay = timers.next_delay(monotonic())
                    timeout = -1.0 if delay is None else delay
                else:
                    timeout = -1.0
                if dirty:
                    if clock - last_periodic >= PERIODIC_INTERVAL:
                        for hook in periodic:
                            hook()
                        last_periodic = clock
                        dirty = False
                    elif timeout < 0 or timeout > PERIODIC_INTERVAL:
                        # wake once more when the loop goes idle, to publish the last figures
                        timeout = PERIODIC_INTERVAL
                try:
                    # a poll that keeps the GIL first, when set (keep_gil_for_ready_polls)
                    events = ready_poll() if ready_poll is not None else None
                    if not events and (timeout != 0.0 or ready_poll is None):
                        if timeout != 0.0 and not may_sleep():
                            timeout = 0.0
                        events = poll(timeout)
                except InterruptedError:
                    continue
                clock = self.clock = wall()
                iterations += 1
                if events:
                    dirty = True
                    for fd, mask in events:
                        # handlers[fd], not .get(fd) and a None test: a call and three opcodes
                        # less per event (about 300 instructions per echo request, base_echo.sh)
                        try:
                            handlers[fd](mask)
                        except KeyError as exc:
                            if exc.__traceback__.tb_next is not None or fd in handlers:
                                log.exception("%s: handler for fd %d failed", self.name, fd)
                            # else: an earlier handler of this batch unregistered fd
                        except Exception:
                            log.exception("%s: handler for fd %d failed", self.name, fd)
                if posted:
                    dirty = True
                    self._run_posted()
                if heap:
                    first, now = heap[0], monotonic()
                    # pop_due only when it finds something: its frame per iteration cost
                    # about 1,500 instructions per request in a PROCESS worker (cgprocess.sh)
                    due = timers.pop_due(now) if first.cancelled or first.when <= now else None
                    if due:
                        dirty = True
                        for timer in due:
                            try:
                                timers.fire(timer)
                            except Exception:
                                log.exception("%s: timer %d callback failed", self.name, timer.id)
                if deferred:
                    dirty = True
                    for _ in range(len(deferred)):
                        try:
                            callback = deferred.popleft()
                        except IndexError:  # a callback ran run_once, which ran the rest
                            break
                        try:
                            callback()
                        except Exception:
                            log.exception("%s: deferred callback failed", self.name)
        finally:
            if watching_signals:
                self._unwatch_signals()
            self.iterations += iterations
            for hook in periodic:
                try:
                    hook()
                except Exception:
                    log.exception("%s: periodic hook failed", self.name)
            self._running = False

    def run_once(self, timeout: float = 0.0) -> None:
        """One iteration with a bounded wait (used while draining at shutdown)."""
        for hook in self.before_poll:
            hook()
        if timeout != 0.0 and not self._may_sleep():
            timeout = 0.0
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            events = []
        self.clock = time.time()
        for fd, mask in events:
            handler = self._handlers.get(fd)
            if handler is not None:
                try:
                    handler(mask)
                except Exception:
                    log.exception("%s: handler for fd %d failed", self.name, fd)
        if self._posted:
            self._run_posted()
        for timer in self.timers.pop_due(time.monotonic()):
            try:
                self.timers.fire(timer)
            except Exception:
                log.exception("%s: timer %d callback failed", self.name, timer.id)
        for _ in range(len(self._deferred)):
            try:
                callback = self._deferred.popleft()
            except IndexError:  # a callback ran run_once again, which ran the rest
                break
            try:
                callback()
            except Exception:
                log.exception("%s: deferred callback failed", self.name)

    def drain_posted(self) -> None:
        """After the loop ended: run what other threads posted meanwhile (a hand-off that
        arrives at a stopped worker is refused there instead of leaking its socket)."""
        while self._posted:
            self._run_posted()

    def close(self) -> None:
        """Release the epoll fd and the wake-up pair; the loop must not be running."""
        self.timers.clear_all()
        self._handlers.clear()
        for sock in (self._wake_reader, self._wake_writer):
            try:
                sock.close()
            except OSError:
                pass
        try:
            self._epoll.close()
        except OSError:
            pass

    def close_after_fork(self) -> None:
        """In a forked child: drop the parent's loop without touching fds the child still needs."""
        # The object closes its own fd (the child's copy); a bare os.close would leave it
        # open, and collected later it would close whatever file had reused the number.
        self._epoll.close()
        self._wake_reader.close()
        self._wake_writer.close()
