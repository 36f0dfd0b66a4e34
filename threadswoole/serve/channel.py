"""A response's way out: bytes to one session, in order, with back-pressure, from either thread.

Most responses are one `send` (head + body) and never meet this class. A `Channel` is made
when a response streams or the peer reads slowly. It writes through the worker's router
(BASE/THREAD: this worker's own socket; PROCESS: a message to the owning reactor thread) and
keeps what the connection cannot take yet (1008: the socket's queue is full) in a deque of
its own, written again on a short timer. How full the connection is comes from its shared
record (``C_SEND_QUEUED``, kept by whichever reactor owns the socket, so every mode reads the
same word): above `HIGH_WATER` nothing more is written until it is back under it.

Producers: the worker's loop thread calls `send` (never blocks; `congested` tells a producer
to stop producing), the worker's application thread (a WSGI application reading a streamed
body, or streaming to a slow client) calls `send_from_thread`, which hands the bytes to the
loop (`Reactor.post`) and blocks while more than `HIGH_WATER` bytes wait here. A peer that
takes nothing for `stall_timeout` seconds is disconnected, and the producer learns it from the
False that `send*` returns (the connection is `broken`).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from threadswoole._context import current
from threadswoole.errors import ErrorCode
from threadswoole.state import shared as layout

__all__ = ["Channel", "HIGH_WATER", "LOW_WATER"]

HIGH_WATER = 1024 * 1024  # bytes queued for a connection before its producer must wait
LOW_WATER = 256 * 1024  # ... and until it may go on
RETRY_MS = 5  # how soon a refused write is tried again
_CLOSE = object()  # in the deque: close the connection once everything before it is written


class Channel:
    """The output of one session (see the module docstring)."""

    def __init__(self, router: Any, reactor: Any, session: int, *, max_send: int, stall_timeout: float) -> None:
        self.router = router
        self.reactor = reactor
        self.session = session
        state = router.state
        self.words = state.q
        self.queued_word = state.record_base(session) + layout.C_SEND_QUEUED
        self.max_send = max_send  # buffer_output_size: one send() takes at most this much
        self.stall_timeout = stall_timeout
        self.pending: collections.deque[Any] = collections.deque()
        self.pending_bytes = 0
        self.broken = False  # the peer is gone (or was dropped for not reading)
        self.closing = False
        self.threaded = False  # an application thread writes (then `condition` guards the deque)
        self.condition = threading.Condition()
        self._flush_posted = False
        self._timer = 0
        self._progress_at = time.monotonic()
        self._last_queued = 0
        self.drain_callbacks: list[Any] = []  # async producers waiting for the congestion to pass

    # -- state --------------------------------------------------------------------------------
    @property
    def congested(self) -> bool:
        """True while a producer should stop: bytes wait here, or the socket's queue is high."""
        return bool(self.pending) or self.words[self.queued_word] > HIGH_WATER

    @property
    def idle(self) -> bool:
        """Everything handed to the channel has left it (the reactor may still be writing)."""
        return not self.pending

    # -- the loop thread ------------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Write `data` after everything before it; False once the connection is broken."""
        if self.broken:
            return False
        if self.pending or self.words[self.queued_word] > HIGH_WATER:
            self._enqueue(data)
            self._arm()
            return True
        return self._write(data)

    def close_when_done(self) -> None:
        """Close the connection after the bytes handed over so far (loop thread)."""
        if self.broken or self.closing:
            return
        self.closing = True
        if self.pending:
            self.pending.append(_CLOSE)
        else:
            self.router.close(self.session, False)

    def disconnected(self) -> None:
        """The connection closed (the handler's `closed`): drop the rest, wake a producer."""
        with self.condition:
            self.broken = True
            self.pending.clear()
            self.pending_bytes = 0
            self.condition.notify_all()
        if self._timer:
            self.reactor.clear_timer(self._timer)
            self._timer = 0
        self._call_drained()

    def when_drained(self, callback: Any) -> None:
        """Call `callback()` (loop thread) once the connection is no longer congested (or broken)."""
        if self.broken or not self.congested:
            callback()
            return
        self.drain_callbacks.append(callback)
        self._arm()

    def _call_drained(self) -> None:
        callbacks, self.drain_callbacks = self.drain_callbacks, []
        for callback in callbacks:
            callback()

    def flush(self) -> None:
        """Write what waits here while the connection has room; re-arm if some is left."""
        self._flush_posted = False
        self._timer = 0
        if self.broken:
            return
        with self.condition:
            pending = self.pending
            while pending and self.words[self.queued_word] <= HIGH_WATER:
                item = pending.popleft()
                if item is _CLOSE:
                    self.router.close(self.session, False)
                    continue
                self.pending_bytes -= len(item)
                if not self._write_piece(item, requeue=True):
                    break
            if self.pending_bytes <= LOW_WATER:
                self.condition.notify_all()
        queued = self.words[self.queued_word]
        if queued < self._last_queued:
            self._progress_at = time.monotonic()  # the socket took some of its queue
        self._last_queued = queued
        if self.drain_callbacks and (self.broken or not self.congested):
            self._call_drained()
        if (self.pending or self.drain_callbacks) and not self.broken:
            if time.monotonic() - self._progress_at > self.stall_timeout:
                self._drop_stalled()
            else:
                self._arm()

    # -- an application thread ------------------------------------------------------------------
    def send_from_thread(self, data: bytes) -> bool:
        """From the application thread: queue `data` for the loop, wait while too much waits."""
        with self.condition:
            if self.broken:
                return False
            self._enqueue(data)
            self._post_flush()
            while self.pending_bytes > HIGH_WATER and not self.broken:
                self.condition.wait(0.5)
            return not self.broken

    def close_from_thread(self) -> None:
        with self.condition:
            if not self.broken and not self.closing:
                self.closing = True
                self.pending.append(_CLOSE)
                self._post_flush()

    # -- internals ----------------------------------------------------------------------------
    def _post_flush(self) -> None:
        if not self._flush_posted:
            self._flush_posted = True
            self.reactor.post(self.flush)

    def _enqueue(self, data: bytes) -> None:
        if not self.pending:
            self._progress_at = time.monotonic()
        self.pending.append(data)
        self.pending_bytes += len(data)

    def _arm(self) -> None:
        if not self._timer and not self.broken:
            self._timer = self.reactor.after(RETRY_MS, self.flush)

    def _write(self, data: bytes) -> bool:
        ok = self._write_piece(data, requeue=False)
        if not ok and not self.broken:
            self._arm()
        return not self.broken

    def _write_piece(self, data: Any, *, requeue: bool) -> bool:
        """One send (split at max_send); on a full queue the rest waits here. False: stop."""
        limit = self.max_send
        view = memoryview(data) if len(data) > limit else None
        offset, size = 0, len(data)
        while offset < size:
            piece = data if view is None else bytes(view[offset:offset + limit])
            if self.router.send(self.session, piece):
                offset += len(piece)
                self._progress_at = time.monotonic()
                continue
            code = current().last_error
            rest = data if offset == 0 else bytes(memoryview(data)[offset:])
            if code == ErrorCode.OUTPUT_BUFFER_OVERFLOW:
                self.pending.appendleft(rest)
                self.pending_bytes += len(rest)
                return False
            with self.condition:  # (an RLock: flush() already holds it)
                self.broken = True  # closed, closing, or never existed: nobody to write to
                self.pending.clear()
                self.pending_bytes = 0
                self.condition.notify_all()
            return False
        return True

    def _drop_stalled(self) -> None:
        with self.condition:
            self.broken = True
            self.pending.clear()
            self.pending_bytes = 0
            self.condition.notify_all()
        self.router.close(self.session, True)
        self._call_drained()
