"""A worker's event runtime: invokes user callbacks safely and keeps the per-worker counters.

Contract §5.4: an exception escaping a callback is logged with its traceback and counted in
`stats()['callback_error_count']`; the worker and its connections carry on. SystemExit is
not caught: it ends the worker, and the supervisor starts a new one.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Callable


if TYPE_CHECKING:
    from threadswoole.connections.connection import Connection
    from threadswoole.state.counters import StatCounters

log = logging.getLogger("threadswoole")


class Runtime:
    """Callbacks and counters of one worker (event or task worker)."""

    def __init__(self, server: Any, worker_id: int, counters: "StatCounters", *, max_request: int, grace: int, request_stop: Callable[[], Any]) -> None:
        self.server = server
        self.worker_id = worker_id
        self.counters = counters
        self.requests = 0
        self.responses = 0
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
        self.counters.request += 1

    def check_max_request(self) -> None:
        """After the callback: stop the worker once it handled max_request requests."""
        if self.requests == self.max_request:
            self.reached_max_request()

    def reached_max_request(self) -> None:
        if not self._stop_requested:
            self._stop_requested = True
            self._request_stop()

    def start(self) -> None:
        self.call("worker_start", self.server._callbacks.lookup("worker_start"), self.server, self.worker_id)

    def stop(self) -> None:
        self.call("worker_stop", self.server._callbacks.lookup("worker_stop"), self.server, self.worker_id)


class InlineSink:
    """BASE and THREAD modes: connection events run the user's callbacks right in the reactor."""

    def __init__(self, runtime: Runtime, reactor_id: int) -> None:
        self.runtime = runtime
        self.server = runtime.server
        self.reactor_id = reactor_id

    def holds_record(self, conn: "Connection") -> bool:
        return False  # close runs inline: the record can be retired right after it

    def on_open(self, conn: "Connection") -> None:
        callback = conn.listener.on_connect
        if callback is not None:
            self.runtime.call("connect", callback, self.server, conn.session_id, self.reactor_id)

    def on_data(self, conn: "Connection", data: bytes) -> None:
        runtime = self.runtime
        # inline copy of Runtime.counted_request (this is the hot path): counted first so
        # stats() inside the callback includes this request, checked after it ran
        runtime.requests += 1
        runtime.counters.request += 1
        try:
            conn.listener.on_receive(self.server, conn.session_id, self.reactor_id, data)
        except Exception:
            runtime.failed("receive")
        if runtime.requests == runtime.max_request:
            runtime.reached_max_request()

    def on_closed(self, conn: "Connection") -> None:
        callback = conn.listener.on_close
        if callback is not None:
            self.runtime.call("close", callback, self.server, conn.session_id, self.reactor_id)

    def on_buffer_full(self, conn: "Connection") -> None:
        self.runtime.call("buffer_full", conn.listener.on_buffer_full, self.server, conn.session_id)

    def on_buffer_empty(self, conn: "Connection") -> None:
        self.runtime.call("buffer_empty", conn.listener.on_buffer_empty, self.server, conn.session_id)
