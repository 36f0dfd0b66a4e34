"""One ASGI worker's asyncio side: its `BridgedLoop`, the lifespan protocol, in-flight requests.

Lifespan (ASGI lifespan 2.0): every worker runs the application's startup in its own loop before
it serves (``worker_start``: the loop runs on its own, the reactor waits), and its shutdown
after it stopped serving (``worker_stop``), as uvicorn does per worker process. ``--lifespan
auto``: an application that raises before answering ``lifespan.startup`` does not support it
(logged, and serving goes on); ``on``: that is a startup failure; ``off``: never sent. A
``lifespan.startup.failed`` (or a failure with ``on``) stops the server with exit status 3.
``scope["state"]`` of the lifespan is copied into every request's scope.

At ``worker_stop`` requests still in flight get up to ``graceful_timeout`` seconds to finish
first (in PROCESS mode their connections are alive in the master; in BASE and THREAD the core
has closed them already, so they end at once with ``http.disconnect``), then the rest is
cancelled and the loop closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from threadswoole.serve.asgi_loop import BridgedLoop

log = logging.getLogger("threadswoole.serve")

__all__ = ["AsgiRuntime", "ASGI_VERSION"]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_VERSION = {"version": "3.0", "spec_version": "2.0"}


class _Lifespan:
    """The lifespan scope of one worker: the app's task and the four messages."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, required: bool) -> None:
        self.app = app
        self.loop = loop
        self.required = required
        self.state: dict[str, Any] = {}
        self.started = loop.create_future()
        self.stopped = loop.create_future()
        self.shutdown_asked = loop.create_future()
        self.sent_startup = False
        self.failed: str | None = None
        self.task: asyncio.Task | None = None

    async def main(self) -> None:
        scope = {"type": "lifespan", "asgi": LIFESPAN_VERSION, "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: BLE001 - the app's failure is reported, not raised
            if not self.started.done():
                if self.required:
                    log.error("the application's lifespan startup failed", exc_info=exc)
                    self.failed = f"{type(exc).__name__}: {exc}"
                else:
                    log.info("the application does not support the ASGI lifespan protocol (%s: %s); serving without it",
                             type(exc).__name__, exc)
            elif not self.stopped.done():
                log.error("the application's lifespan shutdown failed", exc_info=exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            for future in (self.started, self.stopped):
                if not future.done():
                    future.set_result(None)

    async def receive(self) -> dict[str, Any]:
        if not self.sent_startup:
            self.sent_startup = True
            return {"type": "lifespan.startup"}
        await self.shutdown_asked
        return {"type": "lifespan.shutdown"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            _settle(self.started)
        elif kind == "lifespan.startup.failed":
            self.failed = str(message.get("message", "")) or "lifespan.startup.failed"
            log.error("the application's lifespan startup failed: %s", self.failed)
            _settle(self.started)
        elif kind == "lifespan.shutdown.complete":
            _settle(self.stopped)
        elif kind == "lifespan.shutdown.failed":
            log.error("the application's lifespan shutdown failed: %s", message.get("message", ""))
            _settle(self.stopped)
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class AsgiRuntime:
    """The asyncio loop, lifespan and in-flight request tasks of one worker thread."""

    def __init__(self, app: Any, reactor: Any, *, lifespan: str, timeout: float) -> None:
        self.app = app
        self.loop = BridgedLoop(reactor)
        self.lifespan_mode = lifespan
        self.timeout = timeout
        self.lifespan: _Lifespan | None = None
        self.state: dict[str, Any] = {}
        self.in_flight: set[asyncio.Task] = set()

    def start(self, coroutine: Any) -> asyncio.Task:
        """Start a request's coroutine (eagerly); keep it until it is done."""
        task = self.loop.start_task(coroutine)
        if not task.done():
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return task

    def track(self, task: asyncio.Task, ended: Any) -> None:
        """A request task that has to wait: kept (for the shutdown), `ended(task)` when done."""
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        task.add_done_callback(ended)

    def startup(self) -> bool:
        """worker_start: run lifespan.startup to completion; False when it failed."""
        if self.lifespan_mode == "off":
            return True
        lifespan = self.lifespan = _Lifespan(self.app, self.loop, self.lifespan_mode == "on")
        lifespan.task = self.loop.create_task(lifespan.main())
        self.loop.run_until_complete(lifespan.started)
        if lifespan.failed is not None:
            return False
        self.state = lifespan.state
        return True

    def shutdown(self) -> None:
        """worker_stop: let in-flight requests finish (bounded), run lifespan.shutdown, close."""
        loop = self.loop
        if loop.is_closed():
            return
        try:
            if self.in_flight:
                loop.run_until_complete(asyncio.wait(list(self.in_flight), timeout=self.timeout))
            lifespan = self.lifespan
            if lifespan is not None and lifespan.task is not None and not lifespan.task.done() and lifespan.failed is None:
                _settle(lifespan.shutdown_asked)
                loop.run_until_complete(asyncio.wait([lifespan.task, lifespan.stopped], timeout=self.timeout,
                                                     return_when=asyncio.FIRST_COMPLETED))
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            log.exception("the ASGI loop did not shut down cleanly")
        finally:
            loop.close()
