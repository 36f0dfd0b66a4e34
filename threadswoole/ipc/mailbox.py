"""One thread's outgoing mailboxes: batched per loop iteration, resumed when a pipe drains.

Every thread that talks to other workers (a BASE worker, a PROCESS reactor thread, a
PROCESS worker) keeps one Outbox per destination here. Messages put during an iteration
leave in one datagram per destination just before the loop polls again. A pipe that is full
is watched for writability; a reactor thread compares an outbox's `pending_bytes` with
BACKLOG_LIMIT to stop reading the connections that feed that worker until it catches up
(Swoole's back-pressure), and `on_drained` tells it when to resume.

A thread that leaves (a worker stopping, a reactor thread at shutdown) pushes out what it
still holds with `flush_until`, waiting for its destinations up to the bound of its stop
(`max_wait_time`); what is still not taken then is dropped with a warning, never silently.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any, Callable

from threadswoole.ipc import messages
from threadswoole.loop.reactor import EPOLLOUT, Reactor

log = logging.getLogger("threadswoole")
BACKLOG_LIMIT = 8 * 1024 * 1024  # bytes queued for one destination before its producers pause


class MailboxLink:
    """Outboxes from one thread to other mailboxes, flushed before each poll."""

    def __init__(self, reactor: Reactor, src: int, posts: dict[int, Any]) -> None:
        self.reactor = reactor
        self.src = src
        self.posts = posts  # mailbox id -> post socket
        self.outboxes: dict[int, messages.Outbox] = {}
        self.on_drained: Callable[[int], Any] | None = None  # called with the mailbox id
        self.before_flush: Callable[[], Any] | None = None  # last messages of an iteration (acks)
        reactor.before_poll.append(self.flush)

    def outbox(self, target: int) -> messages.Outbox:
        box = self.outboxes.get(target)
        if box is None:
            box = messages.Outbox(self.posts[target], self.src, lambda box, target=target: self._blocked(box, target))
            self.outboxes[target] = box
        return box

    def flush(self) -> None:
        if self.before_flush is not None:
            self.before_flush()
        for target, box in self.outboxes.items():
            if (box.batch or box.pending) and not box.blocked:
                was_over = box.pending_bytes > BACKLOG_LIMIT
                box.flush()
                # A destination that was over the limit drained without ever blocking (its
                # socket took it all): its producers may resume now, not only on writability.
                if was_over and box.pending_bytes <= BACKLOG_LIMIT and self.on_drained is not None:
                    self.on_drained(target)

    @property
    def has_pending(self) -> bool:
        """Something is queued for a destination (flushed or not since)."""
        return any(box.has_pending for box in self.outboxes.values())

    def flush_now(self, timeout: float = 1.0, who: str = "") -> bool:
        """`flush_until` a deadline `timeout` seconds from now."""
        return self.flush_until(time.monotonic() + timeout, who)

    def flush_until(self, deadline: float, who: str = "") -> bool:
        """Flush everything, waiting for room in every destination at once until the monotonic
        `deadline` (a thread that leaves: what its callers were told was sent must go out).
        True when all of it went out. What a destination did not take by then is dropped,
        with a warning that names the destination and how many messages and bytes: never in
        silence, and never waiting past the deadline."""
        started = time.monotonic()
        if self.before_flush is not None:
            self.before_flush()
        poller = select.poll()  # (not select(): a worker's fds may be past FD_SETSIZE)
        waiting: dict[int, int] = {}  # fd -> mailbox id, registered with the poller
        while True:
            for target, box in self.outboxes.items():
                done = not box.has_pending or box.flush()
                if done and box.fd in waiting:
                    poller.unregister(box.fd)
                    del waiting[box.fd]
                elif not done and box.fd not in waiting:
                    poller.register(box.fd, select.POLLOUT)
                    waiting[box.fd] = target
            remaining = deadline - time.monotonic()
            if not waiting or remaining <= 0:
                break
            poller.poll(remaining * 1000)
        for target in waiting.values():
            box = self.outboxes[target]
            count, size = box.discard()
            log.warning("%s: dropped %d messages (%d bytes) for mailbox %d: it had no room for them within %.3g s",
                        who or f"mailbox {self.src}", count, size, target, max(0.0, deadline - started))
        return not waiting

    def _blocked(self, box: messages.Outbox, target: int) -> None:
        def writable(_mask: int) -> None:
            if box.flush():
                self.reactor.remove(box.fd)
                if self.on_drained is not None:
                    self.on_drained(target)

        if not self.reactor.has(box.fd):
            self.reactor.add(box.fd, EPOLLOUT, writable)
