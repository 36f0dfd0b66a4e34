"""``wsgi.input`` for a request body that streams (larger than the codec holds whole).

The codec delivers such a body as `HttpBodyChunk` events in the worker's loop thread, while the
application reads it in the worker's application thread (see `app_thread`): `StreamInput` is
the hand-over between them. It holds at most about `INPUT_HIGH_WATER` unread bytes: above that
the connection is paused (the reactor stops reading it, TCP pushes back on the client) and it
is resumed once the application has read it down to `INPUT_LOW_WATER`. So an upload of any
size costs a bounded amount of memory, and an application that never reads its body costs
nothing beyond that either.

Reads follow PEP 3333 (``read(size)``, ``readline(size)``, ``readlines(hint)``, iteration);
``read()`` with no size reads to the end of the body (``wsgi.input_terminated`` is set). A
client that goes away mid-body makes a read raise ``ConnectionResetError``; one that sends
nothing for `timeout` seconds, ``TimeoutError``.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

__all__ = ["StreamInput", "INPUT_HIGH_WATER", "INPUT_LOW_WATER"]

INPUT_HIGH_WATER = 1024 * 1024
INPUT_LOW_WATER = 256 * 1024


class StreamInput:
    """The body of one request, fed by the loop thread, read by the application's thread."""

    def __init__(self, first: bytes, *, pause: Callable[[bool], None], timeout: float) -> None:
        """`pause(True/False)` runs in the loop thread (this class posts it there itself
        through the callable it is given, which must be thread-safe for False)."""
        self._data = bytearray(first)
        self._eof = False
        self._error: str | None = None
        self._condition = threading.Condition()
        self._pause = pause
        self._paused = False
        self._timeout = timeout
        self.received = len(first)  # body bytes that arrived so far (for the access log)

    # -- the loop thread --------------------------------------------------------------------
    def feed(self, data: bytes, final: bool) -> None:
        with self._condition:
            self._data += data
            self.received += len(data)
            if final:
                self._eof = True
            self._condition.notify_all()
            pause = not self._paused and not final and len(self._data) > INPUT_HIGH_WATER
            if pause:
                self._paused = True
        if pause:
            self._pause(True)

    def fail(self, reason: str) -> None:
        """The connection went away before the body ended."""
        with self._condition:
            if not self._eof:
                self._error = reason
            self._condition.notify_all()

    @property
    def complete(self) -> bool:
        return self._eof

    # -- the application's thread -----------------------------------------------------------
    def _wait(self, enough: Callable[[], bool]) -> None:
        """Block until `enough()`, the end of the body, or a failure (caller holds the lock)."""
        deadline = time.monotonic() + self._timeout
        while not enough() and not self._eof:
            if self._error is not None:
                raise ConnectionResetError(f"the client went away before the request body ended ({self._error})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no request body arrived for {self._timeout:g} s")
            self._condition.wait(remaining)

    def _take(self, size: int) -> bytes:
        data = bytes(self._data[:size])
        del self._data[:size]
        if self._paused and len(self._data) <= INPUT_LOW_WATER:
            self._paused = False
            self._pause(False)
        return data

    def read(self, size: int | None = -1) -> bytes:
        with self._condition:
            if size is None or size < 0:
                self._wait(lambda: False)
                return self._take(len(self._data))
            self._wait(lambda: len(self._data) >= size)
            return self._take(min(size, len(self._data)))

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        with self._condition:
            self._wait(lambda: self._data.find(b"\n") >= 0 or 0 <= limit <= len(self._data))
            end = self._data.find(b"\n")
            end = len(self._data) if end < 0 else end + 1
            if 0 <= limit < end:
                end = limit
            return self._take(end)

    def readlines(self, hint: int | None = -1) -> list[str | bytes]:
        lines: list[str | bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line
