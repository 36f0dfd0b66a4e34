"""A writer's local statistics counters, published to its shared-memory stats slot.

Counters are plain attributes (an attribute increment costs about 30 ns here, an
array('q') element about 90 ns, and the hot path does four per request) and are copied to
the slot at most every FLUSH_INTERVAL seconds by the owning loop, and on demand before this
worker reads totals. Readers in other processes therefore see figures at most that old.
"""

from __future__ import annotations

from array import array

from threadswoole.server import _state as S

FLUSH_INTERVAL = 0.02

# Attribute names in the order of the S_* counter indices.
FIELDS = (
    "accept",
    "close",
    "abort",
    "dispatch",
    "request",
    "response",
    "recv_bytes",
    "send_bytes",
    "callback_errors",
    "protocol_errors",
    "tasking",
    "task_done",
    "heartbeat_closes",
)
assert FIELDS.index("heartbeat_closes") == S.S_HEARTBEAT_CLOSES and FIELDS.index("request") == S.S_REQUEST


class StatCounters:
    """Counters of one stats slot; exactly one thread writes them."""

    __slots__ = FIELDS + ("_view",)

    def __init__(self, state: S.SharedState, slot: int) -> None:
        base = state.stat_base(slot)
        self._view = state.q[base : base + len(FIELDS)]
        # resume where a previous holder of the slot (a restarted worker) stopped
        for name, value in zip(FIELDS, self._view.tolist()):
            setattr(self, name, value)

    def flush(self) -> None:
        self._view[:] = array("q", [getattr(self, name) for name in FIELDS])

    def release(self) -> None:
        self._view.release()
