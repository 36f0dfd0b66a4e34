"""Event names (contract R7, §5.4): normalisation, the canonical names, and where each may be registered."""

from __future__ import annotations

from typing import Any, Callable

# Canonical snake_case names, keyed by their normalised spelling (lower case, no underscores).
SERVER_EVENTS = (
    "start",
    "shutdown",
    "worker_start",
    "worker_stop",
    "worker_exit",
    "worker_error",
    "manager_start",
    "manager_stop",
    "connect",
    "receive",
    "packet",
    "close",
    "buffer_full",
    "buffer_empty",
    "task",
    "finish",
    "pipe_message",
    "request",
    "handshake",
    "open",
    "message",
    "before_reload",
    "after_reload",
    "before_shutdown",
)
PORT_EVENTS = frozenset(
    {"connect", "receive", "close", "packet", "buffer_full", "buffer_empty", "request", "handshake", "open", "message"}
)
_BY_KEY = {name.replace("_", ""): name for name in SERVER_EVENTS}


def normalise(event: str) -> str:
    """Map any accepted spelling ("WorkerStart", "workerstart", "worker_start") to the canonical name."""
    if not isinstance(event, str):
        raise TypeError(f"event name must be a str, not {type(event).__name__}")
    name = _BY_KEY.get(event.lower().replace("_", ""))
    if name is None:
        hint = " (write it without the 'on' prefix)" if event.lower().startswith("on") else ""
        raise ValueError(f"unknown event {event!r}{hint}")
    return name


class CallbackTable:
    """Registered callbacks by canonical name; registering again replaces (INV §5.1)."""

    def __init__(self, allowed: frozenset[str] | None = None) -> None:
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self._allowed = allowed

    def register(self, event: str, callback: Callable[..., Any]) -> str:
        name = normalise(event)
        if self._allowed is not None and name not in self._allowed:
            raise ValueError(f"event {name!r} cannot be registered on a Port (only {sorted(self._allowed)})")
        if not callable(callback):
            raise TypeError(f"callback for {name!r} must be callable")
        self._callbacks[name] = callback
        return name

    def get(self, event: str) -> Callable[..., Any] | None:
        return self._callbacks.get(normalise(event))

    def lookup(self, name: str) -> Callable[..., Any] | None:
        """Fast lookup by an already-canonical name (no normalisation)."""
        return self._callbacks.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._callbacks

    def items(self) -> list[tuple[str, Callable[..., Any]]]:
        return list(self._callbacks.items())
