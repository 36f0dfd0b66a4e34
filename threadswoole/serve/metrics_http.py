"""The ``--metrics-bind`` listener: ``GET /metrics`` (Prometheus text format 0.0.4) and
``GET /stats`` (JSON: the whole ``stats()``, the HTTP counters, and per worker).

It is one more port of the same server with a protocol of its own, so it works alike in every
mode: whichever worker the request reaches reads the shared-memory counters of all of them
(``stats()`` for the server's, `Metrics` rows for HTTP's). Families (all ``threadswoole_``):

* ``connections`` (gauge), ``connections_accepted_total``, ``connections_closed_total``,
  ``connections_aborted_total``;
* ``requests_total{code="2xx"}`` (responses by status class), ``request_duration_seconds``
  (histogram: head received to response handed to the socket), ``request_body_bytes_total``,
  ``response_body_bytes_total``, ``websocket_messages_total``;
* ``received_bytes_total`` / ``sent_bytes_total`` (the wire), ``callback_errors_total``,
  ``protocol_errors_total``;
* ``workers`` / ``idle_workers`` (gauges), ``worker_requests_total{worker="0"}``,
  ``worker_restarts_total{worker="0"}``, ``task_queue`` (tasks handed out, not done),
  ``start_time_seconds``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

from threadswoole.http.protocol import HttpProtocol
from threadswoole.protocol.http.events import HttpRequest
from threadswoole.protocol.http.writer import SERVER_NAME, date_bytes
from threadswoole.serve.metrics import COUNTERS, LATENCY_BOUNDS, STATUS_CLASSES
from threadswoole.serve.options import ServeOptions
from threadswoole.state import shared as layout

__all__ = ["MetricsProtocol", "prometheus_text", "stats_document"]

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _totals(rows: Mapping[int, Mapping[str, Any]]) -> dict[str, float]:
    totals: dict[str, float] = dict.fromkeys(COUNTERS, 0)
    totals["latency_sum"] = 0.0
    for row in rows.values():
        for name in totals:
            totals[name] += row.get(name, 0)
    return totals


def stats_document(stats: Mapping[str, int], rows: Mapping[int, Mapping[str, Any]], restarts: Mapping[int, int]) -> dict:
    """What ``/stats`` answers (also what `prometheus_text` renders)."""
    totals = _totals(rows)
    return {
        "server": dict(stats),
        "http": {
            "requests": int(totals["requests"]),
            "responses": {klass: int(totals[f"status_{klass}"]) for klass in STATUS_CLASSES},
            "request_body_bytes": int(totals["body_bytes_in"]),
            "response_body_bytes": int(totals["body_bytes_out"]),
            "websocket_messages": int(totals["websocket_messages"]),
            "latency_seconds_sum": totals["latency_sum"],
            "latency_buckets": {str(bound): int(totals[f"latency_{i}"]) for i, bound in enumerate(LATENCY_BOUNDS)}
            | {"+Inf": int(totals[f"latency_{len(LATENCY_BOUNDS)}"])},
        },
        "workers": [{"worker_id": worker, "requests": int(rows.get(worker, {}).get("requests", 0)),
                     "restarts": restarts.get(worker, 0)} for worker in sorted(restarts)],
    }


def prometheus_text(document: Mapping[str, Any]) -> str:
    """The Prometheus exposition of a `stats_document`."""
    server = document["server"]
    http = document["http"]
    lines: list[str] = []

    def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP threadswoole_{name} {text}")
        lines.append(f"# TYPE threadswoole_{name} {kind}")
        for suffix, value in samples:
            lines.append(f"threadswoole_{name}{suffix} {_number(value)}")

    family("connections", "gauge", "Open connections.", [("", server["connection_num"])])
    family("connections_accepted_total", "counter", "Connections accepted.", [("", server["accept_count"])])
    family("connections_closed_total", "counter", "Connections closed.", [("", server["close_count"])])
    family("connections_aborted_total", "counter", "Connections refused or aborted.", [("", server["abort_count"])])
    family("requests_total", "counter", "HTTP responses by status class (WebSocket handshakes: 1xx).",
           [(f'{{code="{klass}"}}', count) for klass, count in http["responses"].items()])
    buckets = []
    cumulative = 0
    for bound, count in http["latency_buckets"].items():
        cumulative += count
        buckets.append((f'_bucket{{le="{bound}"}}', cumulative))
    family("request_duration_seconds", "histogram", "From the request head to the whole response handed to the socket.",
           buckets + [("_sum", http["latency_seconds_sum"]), ("_count", cumulative)])
    family("request_body_bytes_total", "counter", "Request body bytes read.", [("", http["request_body_bytes"])])
    family("response_body_bytes_total", "counter", "Response body bytes sent.", [("", http["response_body_bytes"])])
    family("websocket_messages_total", "counter", "WebSocket messages received.", [("", http["websocket_messages"])])
    family("received_bytes_total", "counter", "Bytes received on every connection.", [("", server["total_recv_bytes"])])
    family("sent_bytes_total", "counter", "Bytes sent on every connection.", [("", server["total_send_bytes"])])
    family("callback_errors_total", "counter", "Application calls that raised.", [("", server["callback_error_count"])])
    family("protocol_errors_total", "counter", "Requests refused as malformed.", [("", server["protocol_error_count"])])
    family("workers", "gauge", "Workers.", [("", server["worker_num"])])
    family("idle_workers", "gauge", "Workers not in a callback now.", [("", server["idle_worker_num"])])
    family("worker_requests_total", "counter", "Requests per worker.",
           [(f'{{worker="{w["worker_id"]}"}}', w["requests"]) for w in document["workers"]])
    family("worker_restarts_total", "counter", "Restarts per worker (max-requests, reloads, crashes).",
           [(f'{{worker="{w["worker_id"]}"}}', w["restarts"]) for w in document["workers"]])
    family("task_queue", "gauge", "Tasks handed to task workers and not finished.", [("", server["tasking_num"])])
    family("start_time_seconds", "gauge", "When the server started (Unix time).", [("", server["start_time"])])
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


class MetricsProtocol(HttpProtocol):
    """HTTP/1.1 answering /metrics and /stats from the shared counters."""

    name = "metrics"

    def __init__(self, settings: Mapping[str, Any], *, options: ServeOptions) -> None:
        super().__init__(settings)
        self.serve_options = options

    def event_handler(self, dispatcher: Any) -> "MetricsHandler":
        return MetricsHandler(self, dispatcher)

    def required_callback(self) -> str | None:
        return None


class MetricsHandler:
    """One worker's metrics requests."""

    def __init__(self, protocol: MetricsProtocol, dispatcher: Any) -> None:
        self.options = protocol.serve_options
        self.router = dispatcher.router
        self.server = dispatcher.server

    def document(self) -> dict:
        state = self.router.state
        worker_num = self.server.setting["worker_num"]
        restarts = {w: max(0, state.worker_field(w, layout.W_GENERATION) - 1) for w in range(worker_num)}
        metrics = self.options.metrics
        side = self.options.side()
        if side.recorder is not None:
            side.recorder.publish()  # this worker's own latest figures
        rows = metrics.rows() if metrics is not None else {}
        return stats_document(self.router.stats(), rows, restarts)

    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        if type(event) is not HttpRequest:
            return
        if event.method not in ("GET", "HEAD"):
            status, kind, body = "405 Method Not Allowed", "text/plain", b"use GET\n"
        elif event.path == "/metrics":
            status, kind, body = "200 OK", PROMETHEUS_TYPE, prometheus_text(self.document()).encode()
        elif event.path == "/stats":
            status, kind, body = "200 OK", "application/json", json.dumps(self.document(), indent=1).encode() + b"\n"
        elif event.path == "/":
            status, kind, body = "200 OK", "text/plain", b"/metrics (Prometheus), /stats (JSON)\n"
        else:
            status, kind, body = "404 Not Found", "text/plain", b"not found: try /metrics or /stats\n"
        head = (f"HTTP/1.1 {status}\r\nServer: {SERVER_NAME}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n").encode() + b"Date: " + date_bytes(time.time()) + b"\r\n"
        head += b"\r\n" if event.keep_alive else b"Connection: close\r\n\r\n"
        self.router.send(session, head + (b"" if event.method == "HEAD" else body))
        if not event.keep_alive:
            self.router.close(session, False)

    def closed(self, port: Any, session: int) -> None:
        pass

    def failed(self, port: Any, session: int, response: bytes) -> bool:
        return False  # answered at once: nothing of the connection's is unfinished
