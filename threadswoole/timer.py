"""`Timer` and `Event` (contract §6): timers and deferred calls on the current worker's loop.

Inside a running server they use the calling worker's reactor. Outside any server, in a
`Process` child, a private loop is created lazily and `Event.wait()` runs it until no timer
or deferred call is left (§6, §18.7); the child runs it by itself once its callback returns,
as Swoole enters its event loop at the end of a script. Plain scripts keep the StateError:
they cannot be told apart from "a Server exists but is not started yet" until Server
registers itself (see `allow_private_loop`).

`Process.alarm` and Timers exclude each other (§6): `alarm_armed()` is process-wide because
setitimer is, and a forked child starts with neither (timers are not inherited by fork).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any, Callable

from threadswoole._context import ROLE_MANAGER, current
from threadswoole.errors import ContextError, StateError
from threadswoole.loop.reactor import EPOLLIN, Reactor  # the same loop the workers run

_private_allowed = False  # this process is a Process child, outside any server
_private = threading.local()  # .loop: the calling thread's _PrivateLoop, if created
_alarm_armed = False


class _PrivateLoop:
    """A reactor of its own for code outside any server, run by `Event.wait()`."""

    def __init__(self) -> None:
        self.reactor = Reactor("private")
        self.timers = self.reactor.timers
        self.pending_deferred = 0
        self.running = False
        # A signal that lands just before epoll_wait() would otherwise wait for the next
        # timer: with this socket as the wake-up fd the C-level handler wakes the loop,
        # and the Python-level handler (Process.signal's dispatch) runs right after.
        self._signal_reader, self._signal_writer = socket.socketpair()
        self._signal_reader.setblocking(False)
        self._signal_writer.setblocking(False)
        self.reactor.add(self._signal_reader.fileno(), EPOLLIN, self._drain_signal_bytes)

    def user_tick(self, ms: int, callback: Callable[..., Any], *args: Any) -> int:
        return self.reactor.user_tick(ms, callback, *args)

    def user_after(self, ms: int, callback: Callable[..., Any], *args: Any) -> int:
        return self.reactor.user_after(ms, callback, *args)

    def user_clear(self, timer_id: int) -> bool:
        return self.reactor.user_clear(timer_id)

    def user_timer_count(self) -> int:
        return self.reactor.user_timer_count()

    def defer(self, callback: Callable[[], Any]) -> None:
        self.pending_deferred += 1

        def run() -> None:
            self.pending_deferred -= 1
            callback()

        self.reactor.defer(run)

    def has_work(self) -> bool:
        return bool(len(self.timers) or self.pending_deferred)

    def _drain_signal_bytes(self, _mask: int) -> None:
        try:
            while self._signal_reader.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def run(self) -> None:
        if self.running:
            raise StateError("Event.wait(): the loop is already running")
        main = threading.current_thread() is threading.main_thread()
        previous_wakeup = -1
        if main:
            previous_wakeup = signal.set_wakeup_fd(self._signal_writer.fileno(), warn_on_full_buffer=False)
            if previous_wakeup != -1:  # someone else's wake-up fd (asyncio?): leave it in place
                signal.set_wakeup_fd(previous_wakeup)
        self.running = True
        try:
            while self.has_work():
                delay = 0.0 if self.pending_deferred else self.timers.next_delay(time.monotonic())
                self.reactor.run_once(0.0 if delay is None else delay)
        finally:
            self.running = False
            # A signal callback posted during the last iteration still runs; one that comes
            # after this point finds the loop stopped and is called directly instead.
            self.reactor.drain_posted()
            if main and previous_wakeup == -1:
                signal.set_wakeup_fd(-1)

    def close_after_fork(self) -> None:
        self.reactor.close_after_fork()
        self._signal_reader.close()
        self._signal_writer.close()


def allow_private_loop() -> None:
    """Outside any server, give threads without a loop a private one (a Process child calls
    this; Server.__init__ could mark plain scripts by the reverse once it registers itself)."""
    global _private_allowed
    _private_allowed = True


def _private_loop(create: bool) -> _PrivateLoop | None:
    loop = getattr(_private, "loop", None)
    if loop is None and create:
        loop = _private.loop = _PrivateLoop()
    return loop


def _after_fork_in_child() -> None:
    """The child of any fork: no inherited private loop, no interval timer."""
    global _alarm_armed
    _alarm_armed = False
    loop = getattr(_private, "loop", None)
    if loop is not None:
        _private.loop = None
        loop.close_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _loop(what: str) -> Any:
    ctx = current()
    if ctx.role == ROLE_MANAGER:
        raise ContextError(f"{what}: timers are not allowed in the manager")
    if ctx.loop is None:
        if ctx.server is not None:
            raise StateError(f"{what}: the server is not running in this thread")
        if _private_allowed:
            return _private_loop(create=True)
        raise StateError(f"{what}: no event loop here; timers run inside a running server or a Process child")
    return ctx.loop


def _check_ms(ms: Any) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"ms must be an int, not {type(ms).__name__}")
    if ms < 1:
        raise ValueError(f"ms must be >= 1, got {ms}")


def _check_no_alarm(what: str) -> None:
    if _alarm_armed:
        raise ContextError(f"{what}: Process.alarm() is armed in this process; Timer and alarm cannot be combined")


# -- what Process needs from the loops (internal) ------------------------------------------
def set_alarm_armed(armed: bool) -> None:
    """Process.alarm() records whether an interval timer is armed (refuses Timers meanwhile)."""
    global _alarm_armed
    _alarm_armed = armed


def alarm_armed() -> bool:
    return _alarm_armed


def user_timer_count() -> int:
    """Timers the user set on the calling thread's loop (0 when it has none)."""
    ctx = current()
    if ctx.loop is not None:
        return ctx.loop.user_timer_count()
    loop = _private_loop(create=False)
    return 0 if loop is None else loop.user_timer_count()


def call_soon(callback: Callable[..., Any], *args: Any) -> bool:
    """Hand `callback(*args)` to the calling thread's running loop (the worker's reactor or
    a private loop inside Event.wait()); False when no loop runs here. Safe in a signal handler."""
    ctx = current()
    if ctx.loop is not None:
        ctx.loop.post(callback, *args)
        return True
    loop = _private_loop(create=False)
    if loop is not None and loop.running:
        loop.reactor.post(callback, *args)
        return True
    return False


def has_pending_work() -> bool:
    """True when this thread's private loop has timers or deferred calls left."""
    loop = _private_loop(create=False)
    return loop is not None and loop.has_work()


class Timer:
    """Millisecond timers of the calling worker (per process, per thread in THREAD mode)."""

    @staticmethod
    def tick(ms: int, callback: Callable[..., Any], *args: Any) -> int:
        """Call `callback(timer_id, *args)` every `ms` milliseconds; returns the timer id."""
        _check_ms(ms)
        _check_no_alarm("Timer.tick")
        return _loop("Timer.tick").user_tick(ms, callback, *args)

    @staticmethod
    def after(ms: int, callback: Callable[..., Any], *args: Any) -> int:
        """Call `callback(*args)` once after `ms` milliseconds; returns the timer id."""
        _check_ms(ms)
        _check_no_alarm("Timer.after")
        return _loop("Timer.after").user_after(ms, callback, *args)

    @staticmethod
    def clear(timer_id: int) -> bool:
        """Cancel a timer of this worker; False if there is no such timer here."""
        return _loop("Timer.clear").user_clear(timer_id)

    @staticmethod
    def clear_all() -> bool:
        """Cancel every timer this worker's code set (the framework's own are not affected)."""
        _loop("Timer.clear_all").timers.clear_user()
        return True

    @staticmethod
    def exists(timer_id: int) -> bool:
        return _loop("Timer.exists").timers.user_exists(timer_id)

    @staticmethod
    def list() -> list[int]:
        """Ids of the live timers this worker's code set, ascending."""
        return _loop("Timer.list").timers.user_ids()

    clearAll = clear_all


class Event:
    """Deferred calls on the calling worker's loop (`Event.defer`)."""

    @staticmethod
    def defer(callback: Callable[[], Any]) -> None:
        """Run `callback()` after the current loop iteration."""
        if not callable(callback):
            raise TypeError("defer() needs a callable")
        _loop("Event.defer").defer(callback)

    @staticmethod
    def wait() -> None:
        """Outside a server: run this thread's private loop until no timer or deferred call
        is left (returns at once when there is none). Inside a server the worker runs its loop."""
        ctx = current()
        if ctx.loop is not None or ctx.server is not None:
            raise ContextError("Event.wait(): inside a server the worker runs its own loop")
        loop = _private_loop(create=False)
        if loop is not None:
            loop.run()

    @staticmethod
    def add(fd: Any, read_callback: Callable[..., Any] | None = None, write_callback: Callable[..., Any] | None = None, flags: int = 512) -> bool:
        raise NotImplementedError("Event.add (user fds in the server loop) is not implemented yet")

    @staticmethod
    def write(fd: Any, data: Any) -> bool:
        raise NotImplementedError("Event.write is not implemented yet")

    @staticmethod
    def delete(fd: Any) -> bool:
        raise NotImplementedError("Event.delete is not implemented yet")
