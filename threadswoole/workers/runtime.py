"""A worker's runtime: runs a user callback safely and keeps the worker's request counters.

Contract §5.4: an exception escaping a callback is logged with its traceback and counted in
`stats()['callback_error_count']`; the worker and its connections carry on. SystemExit is
not caught: it ends the worker, and the supervisor starts a new one.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any, Callable


if TYPE_CHECKING:
    from threadswoole.state.counters import StatCounters

log = logging.getLogger("threadswoole")
# A leaving worker stops waiting for its destinations this long before max_wait_time is up, so
# it says what it dropped before the manager, which kills it at max_wait_time, has to.
LEAVE_MARGIN = 0.2


def leave_deadline(stop_started: float | None, max_wait_time: float) -> float:
    """The monotonic time until which a leaving worker may push out its queued messages:
    `max_wait_time` after its stop began (now, when it leaves without one, e.g. exit()),
    less LEAVE_MARGIN (at most a tenth of max_wait_time)."""
    start = time.monotonic() if stop_started is None else stop_started
    return start + max_wait_time - min(LEAVE_MARGIN, max_wait_time / 10)


class Runtime:
    """Callbacks and counters of one worker (event or task worker).

    `requests` is the one request counter of the hot path: the stats slot's request count is
    derived from it when the counters are published (`flush`), not incremented beside it."""

    __slots__ = ("worker_id", "counters", "requests", "receipts", "dispatches", "max_request", "_request_base", "_request_stop", "_stop_requested")

    def __init__(self, worker_id: int, counters: "StatCounters", *, max_request: int, grace: int, request_stop: Callable[[], Any]) -> None:
        self.worker_id = worker_id
        self.counters = counters
        self.requests = 0
        # Sizes of the raw reads delivered inline and not counted yet (connections/hot_path.py:
        # one append instead of two increments): `settle` adds them to `requests` and to the
        # counters' `recv_bytes`; `flush` (every publication, stats()) settles first.
        self.receipts: list[int] = []
        self._request_base = counters.request  # a restarted worker's slot keeps counting on
        self.dispatches = 0
        # Swoole's jitter: max_request + random(0..grace), drawn once per worker start, so
        # workers started together do not all recycle at the same moment.
        self.max_request = max_request + (random.randint(0, grace) if max_request and grace else 0)
        self._request_stop = request_stop
        self._stop_requested = False

    def call(self, event: str, callback: Callable[..., Any] | None, *args: Any) -> Any:
        """Run one callback; log and count an exception instead of letting it kill the loop."""
        if callback is None:
            return None
        try:
            return callback(*args)
        except Exception:
            self.failed(event)
            return None

    def failed(self, event: str) -> None:
        self.counters.callback_errors += 1
        log.exception("worker %d: uncaught exception in the %r callback", self.worker_id, event)

    def count_request(self) -> None:
        """One receive/packet/request/message delivery (counted before its callback runs)."""
        self.requests += 1

    def settle(self) -> None:
        """Count the pending inline reads (`receipts`) and the counters' pending writes."""
        receipts = self.receipts
        if receipts:
            self.requests += len(receipts)
            self.counters.recv_bytes += sum(receipts)
            receipts.clear()
        self.counters.settle()

    def flush(self) -> None:
        """Publish this worker's counters to its shared stats slot."""
        self.settle()
        counters = self.counters
        counters.request = self._request_base + self.requests
        counters.flush()

    def check_max_request(self) -> None:
        """After the callback: stop the worker once it handled max_request requests."""
        if self.requests == self.max_request:
            self.reached_max_request()

    def reached_max_request(self) -> None:
        if not self._stop_requested:
            self._stop_requested = True
            self._request_stop()

