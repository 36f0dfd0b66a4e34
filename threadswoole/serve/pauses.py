"""Why each connection's input is paused, for the WSGI and ASGI handlers.

A connection can be paused for several reasons at once (its requests wait behind another call,
its body is not being read, ...): the router pauses it at the first reason and resumes it only
when the last one is gone.
"""

from __future__ import annotations

from typing import Any


class PauseReasons:
    """The reasons per session, and the router that pauses and resumes the connections."""

    __slots__ = ("router", "reasons")

    def __init__(self, router: Any) -> None:
        self.router = router
        self.reasons: dict[int, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.reasons)

    def set(self, session: int, reason: str, on: bool) -> None:
        """Add (`on`) or drop one reason; pause at the first, resume after the last."""
        reasons = self.reasons.get(session)
        if on:
            if reasons is None:
                self.reasons[session] = {reason}
                self.router.pause(session, True)
            else:
                reasons.add(reason)
        elif reasons is not None and reason in reasons:
            reasons.discard(reason)
            if not reasons:
                del self.reasons[session]
                self.router.pause(session, False)

    def paused_for(self, reason: str) -> list[int]:
        """The sessions paused (at least) for `reason`."""
        return [session for session, why in self.reasons.items() if reason in why]

    def forget(self, session: int) -> None:
        """The connection is gone: nothing to resume."""
        self.reasons.pop(session, None)
