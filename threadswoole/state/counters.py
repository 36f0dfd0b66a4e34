"""A writer's local statistics counters, published to its shared-memory stats slot.

Counters are plain attributes (an attribute increment costs about 30 ns here, an
array('q') element about 90 ns, and the hot path does four per request) and are copied to
the slot at most every FLUSH_INTERVAL seconds by the owning loop, and on demand before this
worker reads totals. Readers in other processes therefore see figures at most that old.
"""

from __future__ import annotations

import operator
from array import array

from threadswoole.state import shared as layout
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
    "task_bytes",
    "task_taken",
    "task_taken_bytes",
)
_CLOSE = FIELDS.index("close")
_ABORT = FIELDS.index("abort")
_RECV, _SEND, _DISPATCH, _RESPONSE, _ACCEPT_ = (FIELDS.index(n) for n in ("recv_bytes", "send_bytes", "dispatch", "response", "accept"))
_TASK_TAKEN, _TASK_TAKEN_BYTES = FIELDS.index("task_taken"), FIELDS.index("task_taken_bytes")
_all_fields = operator.attrgetter(*FIELDS)
assert FIELDS.index("heartbeat_closes") == layout.S_HEARTBEAT_CLOSES and FIELDS.index("request") == layout.S_REQUEST
assert FIELDS.index("task_taken_bytes") == layout.S_TASK_TAKEN_BYTES and len(FIELDS) <= layout.STAT_WORDS


class StatCounters:
    """Counters of one stats slot; exactly one thread writes them."""

    __slots__ = FIELDS + ("_view", "_state", "sent_sizes")

    def __init__(self, state: layout.SharedState, slot: int) -> None:
        base = state.stat_base(slot)
        self._state = state
        # Sizes of the writes the send fast path made and has not counted yet (one list append
        # costs about 270 instructions less than the two increments): `settle` adds them to
        # `response` and `send_bytes`; every publication and read of the totals settles first.
        self.sent_sizes: list[int] = []
        self._view = state.word_view(base, base + len(FIELDS))
        # resume where a previous holder of the slot (a restarted worker) stopped
        for name, value in zip(FIELDS, self._view.tolist()):
            setattr(self, name, value)

    def settle(self) -> None:
        """Count the pending fast-path writes (`sent_sizes`) into `response` and `send_bytes`."""
        sent = self.sent_sizes
        if sent:
            self.response += len(sent)
            self.send_bytes += sum(sent)
            sent.clear()

    def flush(self) -> None:
        self.settle()
        self._view[:] = array("q", _all_fields(self))

    def publish_traffic(self) -> None:
        """The five hot counters only (about 0.2 us against 0.8 us for a full flush): PROCESS
        reactor threads call it before their messages leave, so a worker reading stats()
        always sees the bytes of the event it is handling."""
        self.settle()
        view = self._view
        view[_RECV] = self.recv_bytes
        view[_SEND] = self.send_bytes
        view[_DISPATCH] = self.dispatch
        view[_RESPONSE] = self.response
        view[_ACCEPT_] = self.accept

    def publish_task_taken(self) -> None:
        """A task worker took a task whose on_task may run long: the taken counts now (stats)."""
        view = self._view
        view[_TASK_TAKEN] = self.task_taken
        view[_TASK_TAKEN_BYTES] = self.task_taken_bytes

    def publish_close(self) -> None:
        """Publish the close count at once: the acceptor of PROCESS/THREAD mode derives the
        live connection count (max_conn) from it, so it must not lag."""
        self._view[_CLOSE] = self.close

    def publish_accepts(self) -> None:
        """Accept, abort and close counts at once (the acceptor calls it per accept: not hot)."""
        view = self._view
        view[_ACCEPT_] = self.accept
        view[_ABORT] = self.abort
        view[_CLOSE] = self.close

    def release(self) -> None:
        self._state.release_view(self._view)
