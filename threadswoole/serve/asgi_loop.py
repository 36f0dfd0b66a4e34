"""The asyncio loop of an ASGI worker, driven by the worker's reactor in the same thread.

A worker thread has one loop already: its `Reactor`, which owns the connections and is run by
the mode driver. The application's ``await``s need an asyncio loop. Options weighed (hello-world
ASGI, per request, measured with ``python3 -m stress.micro_serve``: see docs/serve.md):

1. asyncio outside, the reactor inside it: impossible without rewriting every mode driver (they
   own their loop, its shutdown and its signal hand-off);
2. an asyncio loop in a second thread, requests handed over: two thread switches per request
   (13-37 us here, several times the whole hello-world handler);
3. **this**: the reactor is the outer loop; the asyncio loop is a stock `SelectorEventLoop`
   (its own epoll, whose descriptor is registered in the reactor) that the reactor *steps*
   when it has work: after the reactor's handlers ran (a deferred call), when one of asyncio's
   descriptors is ready, and when one of its timers is due (a reactor timer per distinct
   millisecond). A step is ``call_soon(stop); run_forever()``: one pass over what is ready,
   whatever number of requests it holds. Each request starts as a real `asyncio.Task`
   (``current_task()``, contextvars, cancellation, anyio and sniffio all work) whose first step
   runs at once, inside the reactor's event handler (an "eager" start: Python 3.12's
   ``eager_start``; on 3.11, which has none, the task's first step, scheduled by its
   constructor, is run right there instead of waiting for the next loop pass). A request that
   never waits therefore completes without the asyncio loop running at all: no step, no
   hand-over, no wake-up. (A Task per request, stepped by the loop as uvicorn does, costs
   4.6 us at best here, batched 50 a pass; started eagerly, 2.0-2.7 us; a bare coroutine, 0.3
   us, but without a Task anyio and sniffio, hence Starlette and FastAPI, do not work.)

The loop is otherwise stock asyncio: ``run_until_complete`` on it works as usual outside the
reactor's handlers (the lifespan startup runs that way before the worker serves, and the
shutdown after it stopped), transports, subprocesses, executors and ``call_soon_threadsafe``
(which wakes the loop through its self-pipe, one of its own descriptors) included.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import sys
from typing import Any, Callable, Coroutine

from threadswoole.loop.reactor import EPOLLIN

__all__ = ["BridgedLoop", "NATIVE_EAGER_START"]

NATIVE_EAGER_START = sys.version_info >= (3, 12)
_set_running_loop = asyncio.events._set_running_loop  # the hook asyncio exports for loop implementations


class BridgedLoop(asyncio.SelectorEventLoop):
    """A SelectorEventLoop stepped by a threadswoole `Reactor` (see the module docstring)."""

    # (class defaults: asyncio's constructor already calls is_running() and call_soon())
    reactor: Any = None
    bridge_step_pending = False  # a step is deferred on the reactor
    bridge_stepping = False
    bridge_more = False  # callbacks were scheduled during the step: step again
    bridge_starting = False  # inside start_task (3.12+: is_running() for eager_start)
    bridge_capture: list[Any] | None = None  # 3.11: the first step of the task being started

    def __init__(self, reactor: Any) -> None:
        selector = selectors.EpollSelector()
        super().__init__(selector)
        self.reactor = reactor
        self.bridge_selector = selector
        self.bridge_wakeups: set[int] = set()  # the milliseconds a reactor timer will step us at
        reactor.add(selector.fileno(), EPOLLIN, self._descriptor_ready)

    # -- what triggers a step -------------------------------------------------------------------
    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
        capture = self.bridge_capture
        if capture is not None:  # Task.__init__ scheduling the first step of start_task's task
            self.bridge_capture = None
            capture.append((callback, args, context))
            return None  # (Task.__init__ ignores the handle)
        handle = super().call_soon(callback, *args, context=context)
        self.request_step()
        return handle

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
        handle = super().call_at(when, callback, *args, context=context)
        if self.reactor is None:
            return handle
        millisecond = math.ceil(when * 1000)
        if millisecond not in self.bridge_wakeups:
            self.bridge_wakeups.add(millisecond)
            delay = max(0.0, millisecond - self.time() * 1000)
            self.reactor.after(delay, self._timer_due, millisecond)
        return handle

    def is_running(self) -> bool:
        return self.bridge_starting or super().is_running()

    def _descriptor_ready(self, _mask: int) -> None:
        self.request_step()

    def _timer_due(self, millisecond: int) -> None:
        self.bridge_wakeups.discard(millisecond)
        self.request_step()

    def request_step(self) -> None:
        """Run a loop pass soon: after this reactor iteration's handlers (never re-entrant)."""
        if self.reactor is None:
            return  # still in asyncio's constructor
        if self.bridge_stepping:
            self.bridge_more = True
        elif not self.bridge_step_pending:
            self.bridge_step_pending = True
            self.reactor.defer(self.step)

    def step(self) -> None:
        """One pass of the asyncio loop over everything that is ready (the reactor's defer)."""
        self.bridge_step_pending = False
        if self.is_closed() or super().is_running():
            return  # closed, or a run_until_complete of our own is in progress
        self.bridge_stepping = True
        try:
            super().call_soon(self.stop)
            self.run_forever()
        finally:
            self.bridge_stepping = False
        if self.bridge_more:
            self.bridge_more = False
            self.request_step()

    # -- starting a request -------------------------------------------------------------------------
    def start_task(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """A Task for `coroutine` whose first step runs now, in the caller's frame; it is done
        on return unless the coroutine had to wait. (Called while a task runs, e.g. from an
        application's callback, it is an ordinary task: tasks do not nest.)"""
        if asyncio._get_running_loop() is not None:
            return self.create_task(coroutine)
        _set_running_loop(self)
        try:
            if NATIVE_EAGER_START:
                self.bridge_starting = True
                try:
                    return asyncio.Task(coroutine, loop=self, eager_start=True)  # type: ignore[call-arg]
                finally:
                    self.bridge_starting = False
            captured: list[Any] = []
            self.bridge_capture = captured
            try:
                task = asyncio.Task(coroutine, loop=self)
            finally:
                self.bridge_capture = None
            if len(captured) == 1:
                callback, args, context = captured[0]
                if context is not None:
                    context.run(callback, *args)
                else:
                    callback(*args)
            else:  # a Task that did not schedule its first step the way 3.11 does: let the loop run it
                self.request_step()
            return task
        finally:
            _set_running_loop(None)

    def close(self) -> None:
        if not self.is_closed() and self.reactor.has(self.bridge_selector.fileno()):
            self.reactor.remove(self.bridge_selector.fileno())
        super().close()
