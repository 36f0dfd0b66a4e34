"""Per-socket state owned by one reactor: the read path, the output queue and its accounting.

Only the owning reactor's thread calls these methods (ARCHITECTURE invariant 1). Output is
written at once when nothing is queued ("write first, buffer the rest"); EPOLLOUT is
registered only while the queue is non-empty, as in asyncio's selector transport.
"""

from __future__ import annotations

import collections
import errno
import os
import ssl
from typing import Any, Protocol

from threadswoole.state import shared as layout
from threadswoole.loop.reactor import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT

RECV_SIZE = 65536
# "Would block" for plain and TLS sockets alike: OpenSSL reports a full socket buffer as
# SSLWantWriteError (and, during a renegotiation or key update, SSLWantReadError).
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError)
_DISCONNECTED = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ESHUTDOWN, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EBADF})


class ConnectionOwner(Protocol):
    """What a Connection calls on the Host that owns it (the Host, one layer up)."""

    def on_writable(self, conn: "Connection") -> None: ...
    def on_readable(self, conn: "Connection") -> None: ...
    def on_socket_error(self, conn: "Connection", code: int) -> None: ...
    def sent_bytes(self, conn: "Connection", count: int) -> None: ...
    def want_write(self, conn: "Connection") -> None: ...


class FileChunk:
    """A queued `sendfile`: `length` bytes from `offset` of an open file, sent with os.sendfile."""

    __slots__ = ("file", "offset", "remaining")

    def __init__(self, file: Any, offset: int, length: int) -> None:
        self.file = file
        self.offset = offset
        self.remaining = length

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass


class Connection:
    """One accepted stream socket (TCP or Unix): identity, flags, codec and output queue."""

    __slots__ = (
        "session_id",
        "sock",
        "fd",
        "host",
        "listener",
        "record",
        "codec",
        "out",
        "out_bytes",
        "events",
        "closing",
        "closed",
        "close_reason",
        "paused",
        "throttled",
        "delayed",
        "protected",
        "above_high_watermark",
        "drain_timer",
        "send_word",
        "send_due",
        "remote",
        "uid",
        "worker_id",
        "tls",
        "opened",
        "client_cert",
        "linger",
        "written",
        "held_pushes",
        "event_worker",
        "event_seq",
        "window_seq",
        "unacked",
        "held_events",
    )

    def __init__(self, host: ConnectionOwner, sock: Any, session_id: int, listener: Any, record: int, remote: Any) -> None:
        self.host = host
        self.sock = sock
        self.fd = sock.fileno()
        self.session_id = session_id
        self.listener = listener
        self.record = record  # word index of this connection's shared-memory record
        self.codec = listener.protocol.new_codec()  # None: a raw stream, bytes delivered as read
        self.out: collections.deque[Any] = collections.deque()
        self.out_bytes = 0
        self.events = 0
        self.closing = False  # close started: on_close runs or ran; no more sends or receives
        self.closed = False  # socket released
        self.close_reason = 0  # ErrorCode telling why (server / client)
        self.paused = False
        self.throttled = False  # PROCESS back-pressure: its worker is behind
        self.delayed = False
        self.protected = False
        self.above_high_watermark = False
        self.drain_timer: int | None = None
        self.send_word = record + layout.C_LAST_SEND  # shared-memory word of last_send_time
        self.send_due = 0.0  # the loop-turn time from which Server.send's fast path stamps it again
        self.remote = remote
        self.uid = 0
        self.worker_id = -1
        self.tls = None
        self.opened = False  # `connect` was delivered (TLS connections open after the handshake)
        self.client_cert: str | None = None  # TLS client certificate (PEM), for get_client_info
        self.linger = False  # after an error answer: half-close and discard input before closing
        self.written = 0  # bytes written to the socket (published in PROCESS mode, see Host)
        self.held_pushes: list[bytes] | None = None  # PUSHes waiting for a codec switch (Host)
        self.event_worker = -1  # PROCESS: the worker of the last protocol event
        self.event_seq = 0  # and its number there (PipeSink.on_event keeps order per connection)
        self.window_seq = 0  # PROCESS: the first of the `unacked` events counted since a check
        self.unacked = 0
        self.held_events: collections.deque[Any] | None = None  # backlogged: events parked, not read (Host.hold_events)

    # -- readiness ------------------------------------------------------------------------
    def on_event(self, mask: int) -> None:
        """Reactor callback for this socket; a plain method so tests can drive it directly."""
        if mask & EPOLLOUT:
            self.host.on_writable(self)
            if self.closed:
                return
        if mask & (EPOLLIN | EPOLLERR | EPOLLHUP):
            self.host.on_readable(self)

    def wanted_events(self) -> int:
        events = 0
        if not (self.paused or self.delayed or self.closing or self.throttled or self.held_events is not None):
            events = EPOLLIN
        if self.out:
            events |= EPOLLOUT
        return events

    # -- output ---------------------------------------------------------------------------
    def queue_file(self, chunk: FileChunk) -> None:
        self.out.append(chunk)
        self.host.want_write(self)

    def flush(self) -> bool:
        """Write queued data until the socket would block; True when the queue is empty."""
        out = self.out
        sock = self.sock
        while out:
            head = out[0]
            if type(head) is FileChunk:
                if not self._send_file(head):
                    return False
                continue
            # Gather several small pieces into one sendmsg (writev) call.
            if len(out) > 1:
                pieces = []
                total = 0
                for piece in out:
                    if type(piece) is FileChunk or total >= RECV_SIZE:
                        break
                    pieces.append(piece)
                    total += len(piece)
                try:
                    sent = sock.sendmsg(pieces) if self.tls is None else sock.send(pieces[0])
                except WOULD_BLOCK:
                    return False
                except OSError as exc:
                    self.host.on_socket_error(self, exc.errno or errno.EPIPE)
                    return False
            else:
                try:
                    sent = sock.send(head)
                except WOULD_BLOCK:
                    return False
                except OSError as exc:
                    self.host.on_socket_error(self, exc.errno or errno.EPIPE)
                    return False
            if sent <= 0:
                return False
            self.host.sent_bytes(self, sent)
            self.out_bytes -= sent
            while sent:
                head = out[0]
                size = len(head)
                if sent >= size:
                    out.popleft()
                    sent -= size
                else:
                    out[0] = memoryview(head)[sent:]
                    sent = 0
        return True

    def _send_file(self, chunk: FileChunk) -> bool:
        if chunk.remaining <= 0:
            chunk.close()
            self.out.popleft()
            return True
        try:
            if self.tls is None:
                sent = os.sendfile(self.fd, chunk.file.fileno(), chunk.offset, min(chunk.remaining, 1 << 20))
            else:
                # TLS cannot use the kernel's sendfile: read a piece and queue it in front.
                data = os.pread(chunk.file.fileno(), min(chunk.remaining, RECV_SIZE), chunk.offset)
                if not data:
                    chunk.remaining = 0
                    return True
                sent = self.sock.send(data)
        except WOULD_BLOCK:
            return False
        except OSError as exc:
            self.host.on_socket_error(self, exc.errno or errno.EPIPE)
            return False
        if sent == 0:  # the file is shorter than announced
            chunk.remaining = 0
            return True
        chunk.offset += sent
        chunk.remaining -= sent
        self.host.sent_bytes(self, sent)
        return True

    def discard_output(self) -> None:
        for piece in self.out:
            if type(piece) is FileChunk:
                piece.close()
        self.out.clear()
        self.out_bytes = 0


def is_disconnect(code: int) -> bool:
    """Errors that mean the peer went away (not a server bug)."""
    return code in _DISCONNECTED
