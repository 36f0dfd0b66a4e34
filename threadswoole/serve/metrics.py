"""The request counters behind ``/metrics`` and ``/stats``: one shared-memory row per worker.

The server's own counters (connections, bytes on the wire, requests, errors, workers) are in
its shared segment already (``stats()``). What HTTP adds (responses by status class, the
latency histogram, body bytes) lives in a `threadswoole.Table` made before start(), with one
row per worker id. A worker counts in plain Python attributes on its hot path and copies them
to its row from its loop's periodic hook (every 20 ms while busy, and when it goes idle), so
whichever worker answers ``/metrics`` reads the whole server, in every mode, at most that old.
A restarted worker resumes its row, so the counters never go backwards.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

from threadswoole._context import current
from threadswoole.sharing.table import Table

__all__ = ["Metrics", "Recorder", "LATENCY_BOUNDS", "COUNTERS"]

# Prometheus' default buckets, with two finer ones below 5 ms (this server answers in < 1 ms).
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
COUNTERS = ("requests", *(f"status_{c}" for c in STATUS_CLASSES), "body_bytes_in", "body_bytes_out",
            *(f"latency_{i}" for i in range(len(LATENCY_BOUNDS) + 1)), "websocket_messages")
_LATENCY_AT = COUNTERS.index("latency_0")
_BYTES_IN_AT = COUNTERS.index("body_bytes_in")
_BYTES_OUT_AT = COUNTERS.index("body_bytes_out")
_WS_AT = COUNTERS.index("websocket_messages")


class Metrics:
    """The shared table (created in the master before start(); workers inherit it)."""

    def __init__(self, worker_num: int) -> None:
        self.worker_num = worker_num
        table = Table(max(64, worker_num * 2))
        for name in COUNTERS:
            table.column(name, Table.TYPE_INT)
        table.column("latency_sum", Table.TYPE_FLOAT)
        table.create()
        self.table = table

    def row(self, worker_id: int) -> dict[str, Any]:
        found = self.table.get(f"w{worker_id}")
        return found if found else {}

    def rows(self) -> dict[int, dict[str, Any]]:
        return {worker_id: self.row(worker_id) for worker_id in range(self.worker_num)}

    def destroy(self) -> None:
        self.table.destroy()


class Recorder:
    """One worker's counters (exactly one thread writes them) and its access-log sink."""

    def __init__(self, worker_id: int, metrics: Metrics | None, access_log: Any) -> None:
        self.worker_id = worker_id
        self.metrics = metrics
        self.access_log = access_log
        self.counts = [0] * len(COUNTERS)
        self.latency_sum = 0.0
        self.dirty = False
        self._thread = threading.get_ident()
        if metrics is not None:
            row = metrics.row(worker_id)
            if row:  # a restarted worker carries on from its predecessor's figures
                self.counts = [int(row.get(name, 0)) for name in COUNTERS]
                self.latency_sum = float(row.get("latency_sum", 0.0))
            loop = current().loop
            if loop is not None:
                loop.periodic.append(self.publish)

    def record(self, code: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """One finished request (the hot path: a few list increments)."""
        counts = self.counts
        counts[0] += 1
        klass = code // 100
        if 1 <= klass <= 5:
            counts[klass] += 1
        counts[_BYTES_IN_AT] += bytes_in
        counts[_BYTES_OUT_AT] += bytes_out
        counts[_LATENCY_AT + bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.latency_sum += seconds
        self.dirty = True

    def websocket_message(self, count: int = 1) -> None:
        self.counts[_WS_AT] += count
        self.dirty = True

    def publish(self) -> None:
        """Copy the counters to this worker's row (the loop's periodic hook)."""
        if not self.dirty or self.metrics is None:
            return
        self.dirty = False
        values: dict[str, Any] = dict(zip(COUNTERS, self.counts))
        values["latency_sum"] = self.latency_sum
        self.metrics.table.set(f"w{self.worker_id}", values)
