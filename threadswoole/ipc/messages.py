"""Messages between processes and threads: one header, batched datagrams, chunked big payloads.

Every pipe is a `socketpair(AF_UNIX, SOCK_DGRAM)` created before any fork: a datagram
arrives whole, so many writers (all workers, several reactor threads) can share one pipe.
A *mailbox* is such a pair: its owner reads the inbox end, everybody else writes to the
post end.

Wire format, per datagram: one or more messages back to back, each a fixed header

    type:B flags:B port:H reactor:h src:i session:q msg_id:I length:I   (26 bytes)

followed by `length` payload bytes. An Outbox collects small messages and sends them in
one datagram (up to BATCH_LIMIT bytes) when flushed, usually once per loop iteration, so a
reactor that read 50 connections in one wake-up writes one datagram per worker, not 50.

A payload bigger than CHUNK_SIZE goes as several datagrams with flags CHUNK, the first
with BEGIN and the last with END, all carrying one msg_id. The reader reassembles per
source (`src`). A source writes one message at a time, so a BEGIN from a source discards
whatever that source had half-sent (a worker killed mid-message), and a chunk without a
matching BEGIN is an orphan and is dropped: that is what a respawned worker sees of a
message that was being sent to a predecessor that crashed or was killed (Swoole's "abnormal
pipeline data"). A worker that stops of its own accord finishes what it has half read first
(`Inbox.finish_messages`), so its successor starts at a message boundary.
"""

from __future__ import annotations

import collections
import errno
import logging
import select
import socket
import struct
import time
from typing import Any, Callable

from threadswoole.connections import operations

log = logging.getLogger("threadswoole")

HEADER = struct.Struct("=BBHhiqII")
HEADER_SIZE = HEADER.size
CHUNK_SIZE = 64 * 1024 - HEADER_SIZE
BATCH_LIMIT = 64 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024
MAX_DATAGRAMS_PER_WAKEUP = 64

FLAG_CHUNK = 1
FLAG_BEGIN = 2
FLAG_END = 4

# Message types.
# reactor -> worker (connection events)
T_CONNECT, T_DATA, T_CLOSE, T_BUFFER_FULL, T_BUFFER_EMPTY, T_PACKET = 1, 2, 3, 4, 5, 6
# reactor -> worker: the client broke the protocol after the events before this; the worker
# writes the payload (the protocol's error answer; empty: reset) behind its answers, and closes
T_PROTOCOL_FAILURE = 7
# worker -> reactor / owner: the connection operations, by their own codes
T_SEND = operations.SEND
T_SENDFILE = operations.SENDFILE
T_CLOSE_REQUEST = operations.CLOSE
T_PAUSE = operations.PAUSE
T_RESUME = operations.RESUME
T_CONFIRM = operations.CONFIRM
T_PROTECT = operations.PROTECT
T_BIND = operations.BIND
T_SWITCH_CODEC = operations.SWITCH_CODEC
T_RESUME_CODEC = operations.RESUME_CODEC
T_PUSH = operations.PUSH
T_CLOSE_DONE = 13  # worker -> reactor: on_close ran, the record may become a tombstone
# redelivery between reactor threads and PROCESS workers (see _redelivery.py)
T_ACK, T_HELLO, T_REPLAY = 21, 22, 23
# between workers and task workers
T_PIPE_MESSAGE, T_TASK, T_FINISH = 30, 31, 32
# to and from the manager
T_WORKER_STARTED, T_WORKER_STOPPING, T_RELOAD, T_SHUTDOWN, T_STOP_WORKER, T_WORKER_EXIT = 40, 41, 42, 43, 44, 45
T_COMMAND, T_COMMAND_REPLY = 50, 51
# reactor -> worker: a parsed application-protocol event (HTTP request, WebSocket message, RESP
# command), type T_EVENT_BASE + its wire_id (threadswoole/protocol/codec.py), payload event.pack()
T_EVENT_BASE = 64
T_EVENT_LAST = T_EVENT_BASE + 63


def reactor_mailbox(reactor_id: int) -> int:
    """Mailbox (and message source) id of PROCESS reactor thread `reactor_id`; workers' mailboxes
    use their global worker ids and the manager's is -1, so these start at -100."""
    return -100 - reactor_id


def is_reactor_mailbox(mailbox: int) -> bool:
    return mailbox <= -100

Handler = Callable[[int, int, int, int, int, int, bytes], Any]  # type, flags, port, reactor, src, session, payload


def make_pipe() -> tuple[socket.socket, socket.socket]:
    """(inbox, post): a datagram socketpair with large buffers; the inbox end is non-blocking."""
    inbox, post = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (inbox, post):
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass
    inbox.setblocking(False)
    post.setblocking(False)
    return inbox, post


class Outbox:
    """Buffered writer to one mailbox; owned by one thread. Never blocks unless told to."""

    __slots__ = ("sock", "fd", "batch", "pending", "on_blocked", "blocked", "next_msg_id", "src", "pending_bytes")

    def __init__(self, sock: socket.socket, src: int, on_blocked: Callable[["Outbox"], Any] | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.src = src
        self.batch = bytearray()
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0
        self.on_blocked = on_blocked  # called once when a datagram could not be written
        self.blocked = False
        self.next_msg_id = 1

    def put(self, type_: int, session: int = 0, payload: bytes | memoryview = b"", *, port: int = 0, reactor: int = 0, flags: int = 0, msg_id: int = 0) -> None:
        """Queue one message; `msg_id` (32 bits) is free for the caller (a sequence number)."""
        size = len(payload)
        if size > CHUNK_SIZE:
            self._put_chunked(type_, session, payload, port, reactor, flags, msg_id)
            return
        batch = self.batch
        if len(batch) + HEADER_SIZE + size > BATCH_LIMIT:
            self._seal()
        batch += HEADER.pack(type_, flags, port, reactor, self.src, session, msg_id, size)
        if size:
            batch += payload

    def put_framed(self, framed: bytes) -> None:
        """Queue messages already framed (headers and payloads back to back, as `parse` reads
        them), e.g. a redelivery Sender's run of events: split into datagrams, and a payload
        over CHUNK_SIZE into chunks, only when they do not fit the batch as they are."""
        batch = self.batch
        if len(batch) + len(framed) <= BATCH_LIMIT:
            batch += framed  # (a message that fits a datagram has no payload over CHUNK_SIZE)
            return
        view = memoryview(framed)
        offset, end = 0, len(framed)
        while offset + HEADER_SIZE <= end:
            type_, flags, port, reactor, _src, session, msg_id, length = HEADER.unpack_from(framed, offset)
            stop = offset + HEADER_SIZE + length
            if length > CHUNK_SIZE:
                self._put_chunked(type_, session, view[offset + HEADER_SIZE : stop], port, reactor, flags, msg_id)
            else:
                if len(self.batch) + (stop - offset) > BATCH_LIMIT:
                    self._seal()
                self.batch += view[offset:stop]
            offset = stop

    def _put_chunked(self, type_: int, session: int, payload: bytes | memoryview, port: int, reactor: int, flags: int, msg_id: int = 0) -> None:
        self._seal()
        view = memoryview(payload)
        if not msg_id:
            msg_id = self.next_msg_id
            self.next_msg_id = (msg_id + 1) & 0xFFFF_FFFF or 1
        total = len(view)
        for offset in range(0, total, CHUNK_SIZE):
            piece = view[offset : offset + CHUNK_SIZE]
            chunk_flags = flags | FLAG_CHUNK
            if offset == 0:
                chunk_flags |= FLAG_BEGIN
            if offset + CHUNK_SIZE >= total:
                chunk_flags |= FLAG_END
            self._queue(HEADER.pack(type_, chunk_flags, port, reactor, self.src, session, msg_id, len(piece)) + piece)

    def _seal(self) -> None:
        if self.batch:
            self._queue(bytes(self.batch))
            self.batch.clear()

    def _queue(self, datagram: bytes) -> None:
        self.pending.append(datagram)
        self.pending_bytes += len(datagram)

    def flush(self) -> bool:
        """Write what is queued; True when everything went out (False: wait for writability)."""
        batch = self.batch
        if batch and not self.pending:
            # The common case, one datagram and none before it: sent from the batch itself,
            # without the copy and the queue (about 2,000 instructions less per flush).
            try:
                self.sock.send(batch)
            except OSError:
                pass  # the general path below retries it and handles the error
            else:
                batch.clear()
                self.blocked = False
                return True
        self._seal()
        pending = self.pending
        send = self.sock.send
        while pending:
            datagram = pending[0]
            try:
                send(datagram)
            except (BlockingIOError, InterruptedError):
                if not self.blocked:
                    self.blocked = True
                    if self.on_blocked is not None:
                        self.on_blocked(self)
                return False
            except OSError as exc:
                if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                    return False
                # The reader is gone (ECONNREFUSED / EPIPE): drop what is queued for it.
                log.debug("mailbox fd %d: dropping %d datagrams: %s", self.fd, len(pending), exc)
                pending.clear()
                self.pending_bytes = 0
                return True
            pending.popleft()
            self.pending_bytes -= len(datagram)
        self.blocked = False
        return True

    def flush_blocking(self, timeout: float | None = None) -> bool:
        """Flush, waiting for room (worker code outside a loop, e.g. shutting down)."""
        import select
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.flush():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            select.select([], [self.fd], [], remaining)
        return True

    @property
    def has_pending(self) -> bool:
        return bool(self.batch) or bool(self.pending)

    def discard(self) -> tuple[int, int]:
        """Drop everything queued; (messages, payload bytes) dropped, a chunked message counted
        once (by its last chunk, which is queued whenever any of its chunks is)."""
        self._seal()
        count = size = 0
        for datagram in self.pending:
            offset, end = 0, len(datagram)
            while offset + HEADER_SIZE <= end:
                _type, flags, _port, _reactor, _src, _session, _msg_id, length = HEADER.unpack_from(datagram, offset)
                if not flags & FLAG_CHUNK or flags & FLAG_END:
                    count += 1
                size += length
                offset += HEADER_SIZE + length
        self.pending.clear()
        self.pending_bytes = 0
        return count, size


class Inbox:
    """Reader of one mailbox: parses batched messages, reassembles chunks, calls a handler."""

    def __init__(self, sock: socket.socket, handler: Handler, one_per_wakeup: bool = False) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.handler = handler
        self.one_per_wakeup = one_per_wakeup  # see on_readable
        self._buffer = bytearray(BATCH_LIMIT + HEADER_SIZE)
        self._view = memoryview(self._buffer)
        self._partial: dict[int, tuple[int, bytearray, tuple]] = {}  # src -> (msg_id, data, header)
        self.orphans = 0
        self.paused = False
        self.msg_id = 0  # msg_id of the message being handed to the handler right now

    def on_readable(self, _mask: int = 0) -> None:
        """Read up to MAX_DATAGRAMS_PER_WAKEUP datagrams (bounded, so one busy pipe cannot starve
        the loop). With `one_per_wakeup`, stop after the first whole message (a chunked one's
        datagrams all) and leave the rest to the next poll, which reports the mailbox again
        (level-triggered): for the busy mailboxes of PROCESS mode, which mostly hold one datagram
        per wake-up, the read that would find the mailbox empty cost a syscall and a
        BlockingIOError, about 5,000 instructions in each process per request served one at a
        time (callgrind, stress/callgrind/process_http.sh)."""
        recv_into = self.sock.recv_into
        view = self._view
        one = self.one_per_wakeup
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            if self.paused:
                return
            try:
                size = recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("mailbox fd %d: read failed: %s", self.fd, exc)
                return
            self.parse(bytes(view[:size]))
            if one and not self._partial:
                return

    def receive(self) -> bytes | None:
        """One datagram from the mailbox, or None when it is empty or paused (for a reader
        that parses on its own, as redelivery.Receiver does); errors are logged."""
        if self.paused:
            return None
        try:
            size = self.sock.recv_into(self._view)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            log.warning("mailbox fd %d: read failed: %s", self.fd, exc)
            return None
        return bytes(self._view[:size])

    def parse(self, datagram: bytes) -> None:
        offset = 0
        end = len(datagram)
        unpack = HEADER.unpack_from
        handler = self.handler
        while offset + HEADER_SIZE <= end:
            type_, flags, port, reactor, src, session, msg_id, length = unpack(datagram, offset)
            start = offset + HEADER_SIZE
            offset = start + length
            payload = datagram[start:offset]
            if flags & FLAG_CHUNK:
                payload = self._reassemble(type_, flags, port, reactor, src, session, msg_id, payload)
                if payload is None:
                    continue
                flags &= ~(FLAG_CHUNK | FLAG_BEGIN | FLAG_END)
            self.msg_id = msg_id
            handler(type_, flags, port, reactor, src, session, payload)

    def _reassemble(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, msg_id: int, payload: bytes) -> bytes | None:
        partial = self._partial.get(src)
        if flags & FLAG_BEGIN:
            if partial is not None:
                self.orphans += 1  # the previous message from this source was never finished
            if flags & FLAG_END:
                self._partial.pop(src, None)
                return payload
            self._partial[src] = (msg_id, bytearray(payload), (type_, port, reactor, session))
            return None
        if partial is None or partial[0] != msg_id:
            self.orphans += 1
            log.debug("mailbox fd %d: dropped an orphan chunk from source %d", self.fd, src)
            return None
        partial[1].extend(payload)
        if flags & FLAG_END:
            del self._partial[src]
            return bytes(partial[1])
        return None

    @property
    def mid_message(self) -> bool:
        """A chunked message is half received (a worker leaving waits for its end)."""
        return bool(self._partial)

    def finish_messages(self, deadline: float, read: Callable[[], Any] | None = None) -> bool:
        """Read on, waiting for datagrams, until no chunked message is half received or the
        monotonic `deadline` passes; True when none is left. For a worker that leaves: it
        may not leave one half read (its successor, reading the same mailbox, would drop the
        rest as orphans), and its senders are mid-flush. Every message read meanwhile goes to
        the handler as usual. `read` is the owner's reader (default `on_readable`)."""
        read = read or self.on_readable
        poller = select.poll()  # (not select(): a worker's fds may be past FD_SETSIZE)
        poller.register(self.fd, select.POLLIN)
        while self._partial:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("mailbox fd %d: left with %d chunked messages half received", self.fd, len(self._partial))
                return False
            if poller.poll(remaining * 1000):
                read()
        return True
