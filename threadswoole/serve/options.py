"""What the WSGI/ASGI handlers share, fixed before start(), and what each worker thread owns.

`ServeOptions` is the run-time half of the `serve` configuration (the other half becomes server
settings). The same object reaches every worker, forked or a thread, so it holds values and the
shared-memory `Metrics` / the access-log descriptor made before start(), plus a registry of
`WorkerSide`s: one per worker thread, made by the ``worker_start`` callback in that thread (its
reactor is bound by then), holding the worker's recorder (metrics, access log), its asyncio loop
for ASGI applications, and the handlers to stop at ``worker_stop``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from threadswoole._context import current
from threadswoole.state import shared as layout

__all__ = ["ServeOptions", "WorkerSide", "connection_facts"]


class WorkerSide:
    """One worker thread's shared pieces (see the module docstring)."""

    def __init__(self, options: "ServeOptions", worker_id: int) -> None:
        self.worker_id = worker_id
        self.reactor = current().loop
        self.recorder: Any = None
        if options.metrics is not None or options.access_log is not None:
            from threadswoole.serve.metrics import Recorder

            self.recorder = Recorder(worker_id, options.metrics, options.access_log)
        self.asgi: Any = None  # the AsgiRuntime (asyncio loop + lifespan) of an ASGI server
        self.stoppers: list[Any] = []  # handlers' stop() methods, run at worker_stop


@dataclass
class ServeOptions:
    """Run-time options of every WSGI/ASGI listener of one `serve` server."""

    server_name: str = "localhost"
    root_path: str = ""
    multithread: bool = False
    multiprocess: bool = False
    body_timeout: float = 60.0  # seconds a streamed request body may pause before reads fail
    send_timeout: float = 60.0  # seconds a peer may read nothing before it is dropped
    graceful_timeout: float = 30.0
    metrics: Any = None  # threadswoole.serve.metrics.Metrics, or None
    access_log: Any = None  # threadswoole.serve.access_log.AccessLog, or None
    ws_max_size: int = 16 * 1024 * 1024
    asgi_app: Any = None  # set for an ASGI server: every worker side gets its runtime
    lifespan: str = "auto"
    startup_failures: Any = None  # an Atomic counting failed lifespan startups (the exit status)
    _sides: dict = field(default_factory=dict, repr=False)

    def side(self) -> WorkerSide:
        """The calling worker thread's side (made on first use if worker_start did not)."""
        known = self._sides.get(threading.get_ident())
        if known is None:
            known = self.start_side(current().worker_id)
        return known

    def start_side(self, worker_id: int) -> WorkerSide:
        side = WorkerSide(self, worker_id)
        if self.asgi_app is not None:
            from threadswoole.serve.asgi_runtime import AsgiRuntime

            side.asgi = AsgiRuntime(self.asgi_app, side.reactor, lifespan=self.lifespan,
                                    timeout=self.graceful_timeout)
        self._sides[threading.get_ident()] = side
        return side

    # -- the server callbacks ------------------------------------------------------------------
    def worker_start(self, server: Any, worker_id: int) -> None:
        side = self.start_side(worker_id)
        if side.asgi is not None and not side.asgi.startup():
            # the ASGI spec: a failed startup means the server must not serve; say so and stop
            if self.startup_failures is not None:
                self.startup_failures.add(1)
            server.shutdown()

    def worker_stop(self, server: Any, worker_id: int) -> None:
        side = self._sides.pop(threading.get_ident(), None)
        if side is None:
            return
        for stop in side.stoppers:
            stop()
        if side.recorder is not None:
            side.recorder.publish()
        if side.asgi is not None:
            side.asgi.shutdown()


def connection_facts(state: layout.SharedState, session: int) -> tuple[str, int, int]:
    """(remote address, remote port, server port) of a session, from its shared record."""
    q = state.q
    base = state.record_base(session)
    remote = layout.unpack_ip(q[base + layout.C_FAMILY], q[base + layout.C_IP_HIGH], q[base + layout.C_IP_LOW])
    return remote, q[base + layout.C_REMOTE_PORT], q[base + layout.C_SERVER_PORT]
