"""The worker's application thread: where a WSGI call runs when it may have to wait.

A WSGI application is synchronous. Most requests arrive whole (the codec holds bodies up to
64 KiB) and are answered in the worker's own loop thread, at no cost beyond the call. Two
cases would make that thread wait, and a waiting loop thread serves nobody (and in PROCESS
mode could not even receive what it waits for: the body arrives through the same loop):

* a request body that streams: the application reads ``wsgi.input`` while the rest arrives;
* a response the peer reads more slowly than the application produces it.

Such a call (or the rest of its response iteration) moves to this thread, one per worker,
started on first use, while the loop thread goes on moving bytes: body chunks in, response
bytes out (`Channel`). The worker keeps running one application call at a time, like a
gunicorn sync worker, so ``wsgi.multithread`` stays what the mode says: other requests of this
worker wait (their connections paused) until the call is done.

Measured alternative (docs/serve.md): running every call in a thread costs a hand-over per
request (``python3 -m stress.micro_serve``: 13-37 us for ``executor.submit(f).result()`` on
this shared two-core machine, against 3-4 us for the whole hello-world WSGI handler), so the
loop thread keeps every call it can finish without waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger("threadswoole.serve")

__all__ = ["AppThread"]


class AppThread:
    """One thread running submitted jobs in order; `stop()` ends it after the current one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], Any]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # a job reports its own errors; this keeps the thread alive
                log.exception("%s: a job failed", self.name)

    def stop(self, timeout: float) -> None:
        """Let the thread finish its current job (for at most `timeout` seconds) and end."""
        thread = self._thread
        if thread is None:
            return
        self._jobs.put(None)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s: the application call still runs after %.1f s; leaving it", self.name, timeout)
        self._thread = None
