"""`Timer` and `Event` (contract §6): timers and deferred calls on the current worker's loop."""

from __future__ import annotations

from typing import Any, Callable

from threadswoole._context import ROLE_MANAGER, current
from threadswoole.errors import ContextError, StateError


def _loop(what: str) -> Any:
    ctx = current()
    if ctx.role == ROLE_MANAGER:
        raise ContextError(f"{what}: timers are not allowed in the manager")
    if ctx.loop is None:
        if ctx.server is not None:
            raise StateError(f"{what}: the server is not running in this thread")
        raise StateError(f"{what}: no event loop here; timers run inside a running server")
    return ctx.loop


def _check_ms(ms: Any) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"ms must be an int, not {type(ms).__name__}")
    if ms < 1:
        raise ValueError(f"ms must be >= 1, got {ms}")


class Timer:
    """Millisecond timers of the calling worker (per process, per thread in THREAD mode)."""

    @staticmethod
    def tick(ms: int, callback: Callable[..., Any], *args: Any) -> int:
        """Call `callback(timer_id, *args)` every `ms` milliseconds; returns the timer id."""
        _check_ms(ms)
        return _loop("Timer.tick").user_tick(ms, callback, *args)

    @staticmethod
    def after(ms: int, callback: Callable[..., Any], *args: Any) -> int:
        """Call `callback(*args)` once after `ms` milliseconds; returns the timer id."""
        _check_ms(ms)
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
    def add(fd: Any, read_callback: Callable[..., Any] | None = None, write_callback: Callable[..., Any] | None = None, flags: int = 512) -> bool:
        raise NotImplementedError("Event.add (user fds in the server loop) is not implemented yet")

    @staticmethod
    def write(fd: Any, data: Any) -> bool:
        raise NotImplementedError("Event.write is not implemented yet")

    @staticmethod
    def delete(fd: Any) -> bool:
        raise NotImplementedError("Event.delete is not implemented yet")
