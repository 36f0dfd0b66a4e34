"""One thread's outgoing mailboxes: batched per loop iteration, resumed when a pipe drains.

Every thread that talks to other workers (a BASE worker, a PROCESS reactor thread, a
PROCESS worker) keeps one Outbox per destination here. Messages put during an iteration
leave in one datagram per destination just before the loop polls again. A pipe that is full
is watched for writability; a reactor thread compares an outbox's `pending_bytes` with
BACKLOG_LIMIT to stop reading the connections that feed that worker until it catches up
(Swoole's back-pressure), and `on_drained` tells it when to resume.
"""

from __future__ import annotations

from typing import Any, Callable

from threadswoole.ipc import messages
from threadswoole.loop.reactor import EPOLLOUT, Reactor

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

    def flush_now(self, timeout: float = 1.0) -> None:
        """Flush everything, waiting for room (used when leaving: nothing may be lost)."""
        if self.before_flush is not None:
            self.before_flush()
        for box in self.outboxes.values():
            box.flush_blocking(timeout)

    def _blocked(self, box: messages.Outbox, target: int) -> None:
        def writable(_mask: int) -> None:
            if box.flush():
                self.reactor.remove(box.fd)
                if self.on_drained is not None:
                    self.on_drained(target)

        if not self.reactor.has(box.fd):
            self.reactor.add(box.fd, EPOLLOUT, writable)
