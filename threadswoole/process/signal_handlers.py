"""`Process.signal` and `Process.alarm` (contract §11): async signal callbacks and setitimer.

The Python-level handler only hands the callback to the loop running in the main thread (the
worker's reactor inside a server, the private loop inside `Event.wait()` in a Process child),
so the callback runs between events like every other callback (STYLE 4: handlers only
enqueue). With no loop running (a synchronous script) it is called from the handler itself:
Python already runs handlers in the main thread between bytecodes, so that is safe, and the
callback is never lost. Inside a server a wake-up fd (`signal.set_wakeup_fd`) is registered
with the reactor, so a signal that lands just before `epoll_wait()` still wakes the loop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any, Callable

from threadswoole import timer
from threadswoole._context import current
from threadswoole.errors import ContextError

log = logging.getLogger("threadswoole")

ALARM_SIGNALS = {signal.ITIMER_REAL: signal.SIGALRM, signal.ITIMER_VIRTUAL: signal.SIGVTALRM, signal.ITIMER_PROF: signal.SIGPROF}
RESERVED_IN_SERVER = (signal.SIGTERM, signal.SIGALRM)  # seed 003/004: not inside a Server
_UNCATCHABLE = (signal.SIGKILL, signal.SIGSTOP)

_callbacks: dict[int, Callable[[int], Any]] = {}
_previous: dict[int, Any] = {}  # disposition before our first handler, restored on removal
_armed_timers: set[int] = set()  # ITIMER_* types this process armed through alarm()


class _WakeupSocket:
    """The wake-up fd of a server reactor: C-level handlers write a byte, the reactor drains it."""

    def __init__(self, loop: Any) -> None:
        from threadswoole.loop.reactor import EPOLLIN

        self.loop = loop
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        loop.add(self.reader.fileno(), EPOLLIN, self._drain)

    def _drain(self, _mask: int) -> None:
        try:
            while self.reader.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


_wakeup: _WakeupSocket | None = None


def _check_signo(signo: Any) -> int:
    if isinstance(signo, bool) or not isinstance(signo, int):
        raise TypeError(f"signo must be an int, not {type(signo).__name__}")
    if signo not in signal.valid_signals() or signo in _UNCATCHABLE:
        raise ValueError(f"signal {signo} cannot be handled")
    return signo


def _dispatch(signo: int, _frame: Any) -> None:
    callback = _callbacks.get(signo)
    if callback is not None and not timer.call_soon(_run, callback, signo):
        _run(callback, signo)


def _run(callback: Callable[[int], Any], signo: int) -> None:
    try:
        callback(signo)
    except Exception:
        log.exception("Process.signal callback for signal %d failed", signo)


def _ensure_wakeup(loop: Any) -> None:
    """Register a wake-up fd with the server reactor of this process, unless one is set."""
    global _wakeup
    if _wakeup is not None and _wakeup.loop is loop:
        return
    candidate = _WakeupSocket(loop)
    previous = signal.set_wakeup_fd(candidate.writer.fileno(), warn_on_full_buffer=False)
    if previous != -1 and (_wakeup is None or previous != _wakeup.writer.fileno()):
        signal.set_wakeup_fd(previous)  # someone else's: theirs wakes this thread too
        loop.remove(candidate.reader.fileno())
        candidate.close()
        return
    if _wakeup is not None:
        _wakeup.close()
    _wakeup = candidate


def install(signo: Any, callback: Callable[[int], Any] | None) -> bool:
    """Process.signal(): set, replace (callable) or remove (None) the callback of `signo`."""
    signo = _check_signo(signo)
    if callback is not None and not callable(callback):
        raise TypeError("the signal callback must be callable or None")
    if threading.current_thread() is not threading.main_thread():
        raise ContextError("Process.signal(): signals can only be handled in the main thread")
    ctx = current()
    if ctx.server is not None and signo in RESERVED_IN_SERVER:
        raise ValueError(f"Process.signal(): {signal.Signals(signo).name} is reserved inside a running server")
    if callback is None:
        _callbacks.pop(signo, None)
        if signo in _previous:
            previous = _previous.pop(signo)
            signal.signal(signo, previous if previous is not None else signal.SIG_DFL)
        return True
    if ctx.loop is not None:
        _ensure_wakeup(ctx.loop)
    if signo not in _callbacks:
        _previous[signo] = signal.signal(signo, _dispatch)
    _callbacks[signo] = callback
    return True


def alarm(interval_usec: Any, which: Any = signal.ITIMER_REAL) -> bool:
    """Process.alarm(): a periodic interval timer of `interval_usec` microseconds; <= 0 clears it."""
    if isinstance(interval_usec, bool) or not isinstance(interval_usec, int):
        raise TypeError(f"interval_usec must be an int, not {type(interval_usec).__name__}")
    if isinstance(which, bool) or which not in ALARM_SIGNALS:
        raise ValueError(f"alarm type must be ITIMER_REAL (0), ITIMER_VIRTUAL (1) or ITIMER_PROF (2), got {which!r}")
    if interval_usec > 0 and timer.user_timer_count():
        raise ContextError("Process.alarm(): this worker has active Timers; alarm and Timer cannot be combined")
    seconds = max(interval_usec, 0) / 1_000_000
    signal.setitimer(which, seconds, seconds)
    if seconds:
        _armed_timers.add(which)
    else:
        _armed_timers.discard(which)
    timer.set_alarm_armed(bool(_armed_timers))
    return True


def reset_for_child(unignore: tuple[int, ...] = ()) -> None:
    """In a Process child: no inherited signal handler survives (seed 003: the child clears
    the signals it inherited). Python's own defaults come back: SIGINT raises
    KeyboardInterrupt, every other handler becomes SIG_DFL; ignored signals stay ignored,
    except `unignore` (the signals a server worker ignores, when forked from one)."""
    _forget()
    for signo in signal.Signals:
        if signo in _UNCATCHABLE:
            continue
        try:
            handler = signal.getsignal(signo)
        except ValueError:
            continue
        if (callable(handler) and handler is not signal.default_int_handler) or (handler == signal.SIG_IGN and signo in unignore):
            signal.signal(signo, signal.default_int_handler if signo == signal.SIGINT else signal.SIG_DFL)


def _forget() -> None:
    """Drop this module's state (after a fork: the registrations were the parent's)."""
    global _wakeup
    for signo, previous in list(_previous.items()):
        try:
            signal.signal(signo, previous if previous is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass
    _previous.clear()
    _callbacks.clear()
    _armed_timers.clear()
    if _wakeup is not None:
        try:
            current_fd = signal.set_wakeup_fd(-1)
            if current_fd not in (-1, _wakeup.writer.fileno()):
                signal.set_wakeup_fd(current_fd)  # not ours: put it back
        except ValueError:
            pass
        _wakeup.close()
        _wakeup = None


os.register_at_fork(after_in_child=_forget)
