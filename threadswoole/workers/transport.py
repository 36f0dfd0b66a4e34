"""How a worker reaches another worker's mailbox: one datagram right away, or a hand-off to a thread.

Tasks, task results, commands, and the messages and connection operations of workers that own
no connection (task workers, user processes, the master and the manager) go through a
Transport. Each message leaves at once as a datagram of its own, never batched with others: a
task worker killed -9 then loses only the task it was running, and the tasks queued behind it
are whole datagrams that its replacement reads from the same mailbox (the manager keeps every
inbox open across respawns). A mailbox that is full makes the sender wait, as Swoole's worker
blocks on a full task pipe (seed 000/002 flow control), for at most `block_seconds`; after that
the call fails with TASK_DISPATCH_FAIL and nothing of the message is sent.

In THREAD mode event workers have no mailbox of their own: messages for them go through the
driver's `deliver` (the owning thread's command queue, which also holds them while the worker
id restarts); every other target is a socket as in the process modes.
"""

from __future__ import annotations

from typing import Any, Callable

from threadswoole._context import set_error
from threadswoole.errors import ErrorCode
from threadswoole.ipc import messages

Deliver = Callable[[int, tuple], bool]  # (target id, (type, flags, port, reactor, src, session, payload))


class Transport:
    """The outgoing side of one thread: mailbox id -> its post socket (or `deliver`)."""

    def __init__(self, posts: dict[int, Any], src: int, *, deliver: Deliver | None = None, block_seconds: float = 3.0) -> None:
        self.posts = posts
        self.src = src  # the message source id the receivers see (a worker id, MASTER, MANAGER)
        self.deliver = deliver
        self.block_seconds = block_seconds
        self._boxes: dict[int, messages.Outbox] = {}

    def reaches(self, target: int) -> bool:
        return target in self.posts or self.deliver is not None

    def post(self, target: int, type_: int, session: int = 0, payload: bytes = b"", *, port: int = 0) -> bool:
        """Send one message now; False with TASK_DISPATCH_FAIL when the mailbox stayed full."""
        sock = self.posts.get(target)
        if sock is None:
            if self.deliver is None:
                raise LookupError(f"no mailbox {target} here")
            return self.deliver(target, (type_, 0, port, 0, self.src, session, payload))
        box = self._boxes.get(target)
        if box is None:
            box = self._boxes[target] = messages.Outbox(sock, self.src)
        if not box.pending and len(payload) <= messages.CHUNK_SIZE:
            # the common case, one small message and nothing queued: one send, no Outbox work
            datagram = messages.HEADER.pack(type_, 0, port, 0, self.src, session, 0, len(payload)) + payload
            try:
                sock.send(datagram)
                return True
            except (BlockingIOError, InterruptedError):
                pass  # full: queue it and wait below
            except OSError:
                return True  # the reader is gone (as Outbox.flush: dropped)
        box.put(type_, session, payload, port=port)
        if box.flush() or box.flush_blocking(self.block_seconds):
            return True
        box.pending.clear()  # never half a message later: the caller was told it failed
        box.pending_bytes = 0
        return set_error(ErrorCode.TASK_DISPATCH_FAIL)
