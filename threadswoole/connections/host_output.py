"""The output half of a Host: writing, queueing and closing the connections one reactor owns.

"Write first, queue the rest" (asyncio's rule): a send goes to the socket at once when
nothing is queued; what the socket does not take is queued and written on EPOLLOUT, which is
registered only while the queue is non-empty. A graceful close finishes writing the queue
(bounded by max_wait_time); after an error answer it half-closes and reads for a moment (a
lingering close), so the peer gets the answer. `HostOutput` is a part of `Host` (host.py),
kept in its own module because the two halves are each a concept of their own.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from typing import Any

from threadswoole._context import SendPath, set_error
from threadswoole.connections import operations
from threadswoole.connections import tls as _tls
from threadswoole.connections.connection import WOULD_BLOCK, Connection, FileChunk, is_disconnect
from threadswoole.errors import ErrorCode
from threadswoole.loop.reactor import EPOLLIN
from threadswoole.state import shared as layout

log = logging.getLogger("threadswoole")
_LINGER_RESET = struct.pack("ii", 1, 0)
RECORD_HOLD_MS = 10_000
LINGER_MS = 2_000  # after an error answer: read and discard for this long before closing


class HostOutput:
    """Sending, queueing and closing; mixed into `Host`, whose attributes it uses."""

    # -- writing ----------------------------------------------------------------------------
    def send_session(self, session: int, data: Any) -> bool:
        """`Server.send` for the calling worker: its own session here, any other forwarded."""
        conn = self.conns.get(session)
        if conn is None:
            return self.forwarder.forward(operations.SEND, session, data)
        return self.send(conn, data)

    def make_send_function(self, slow: Any) -> Any:
        """Server.send's fast path for the worker that owns this Host (the context's
        `send_function`), as one closure: the common case (bytes to a session of ours with
        nothing queued) is written here in one frame; everything else goes to `slow(fd, data,
        server_socket)`, which checks the arguments and takes the full path (the router's
        send_checked). Against Server.send -> send_session -> send -> write this took the
        64-byte echo from 16,975 to 14,063 instructions per request (callgrind, in-process, both
        ends of a socketpair; the client side is about 4,100 of them). The session test is
        an identity test first (callbacks pass back the id object they were given), the type
        call only for another int object or a float or bool that equals a session id."""
        conns_get = self.conns.get
        write = self.write_fd  # os.write (a fast call, unlike socket.send: see hot_path.py) or held_io's
        count = self.counters.sent_sizes.append  # counted by StatCounters.settle (one append, not two increments)
        words = self._d
        reactor = self.reactor
        limit = self.buffer_output_size
        resolution = layout.STAMP_RESOLUTION

        def send_function(session: Any, data: Any, server_socket: int = -1) -> bool:
            conn = conns_get(session)
            if conn is None or conn.out or conn.closing or conn.tls is not None or (size := len(data)) > limit or (conn.session_id is not session and type(session) is not int):
                return slow(session, data, server_socket)  # (TLS writes go through OpenSSL)
            try:
                sent = write(conn.fd, data)  # bytes-like only: a str raises TypeError
            except (OSError, TypeError):
                return slow(session, data, server_socket)  # blocked, broke, or not bytes: the full path says
            count(sent)
            clock = reactor.clock
            if clock >= conn.send_due:  # stamped once per layout.STAMP_RESOLUTION (see there)
                words[conn.send_word] = clock
                conn.send_due = clock + resolution
            if sent < size:
                self.queue_rest(conn, data, sent)
            return True

        return send_function

    def make_send_path(self, slow: Any) -> SendPath:
        """What Server.send's own fast path reads (the worker's `_sender.send`): the same
        case as make_send_function's closure, written in Server.send's frame (one frame less)."""
        return (self.conns.get, self.write_fd, self.counters.sent_sizes.append, self._d, self.reactor, self.buffer_output_size, slow, self.queue_rest)

    def queue_rest(self, conn: Connection, data: Any, sent: int) -> None:
        """The part of `data` the socket did not take: queued, written on EPOLLOUT (a copy
        unless `data` is bytes: the caller may reuse a bytearray or memoryview at once)."""
        rest = memoryview(data if type(data) is bytes else bytes(data))[sent:]
        conn.out.append(rest)
        conn.out_bytes += len(rest)
        self.want_write(conn)
        self._queued_changed(conn)

    def send(self, conn: Connection, data: Any) -> bool:
        """The checks of `Server.send` for a connection this reactor owns, then write first,
        queue the rest (the hot path: the write and its accounting are inlined here)."""
        if conn.closing:
            return set_error(ErrorCode.SESSION_CLOSING if not conn.closed else ErrorCode.SESSION_CLOSED)
        size = len(data)
        if size > self.buffer_output_size:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        if conn.out and conn.out_bytes + size > self.socket_buffer_size:
            self._q[conn.record + layout.C_FLAGS] |= layout.FLAG_OVERFLOW
            return set_error(ErrorCode.OUTPUT_BUFFER_OVERFLOW)
        return self.write(conn, data)

    def write(self, conn: Connection, data: Any) -> bool:
        """Send now what the socket takes, queue the rest; no limit is checked here (the
        caller admitted `data`: Server.send above, or a PROCESS worker for its own sends)."""
        counters = self.counters
        counters.response += 1
        if conn.out:
            conn.out.append(data)
            conn.out_bytes += len(data)
            self._queued_changed(conn)
            return True
        try:
            sent = conn.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self.on_socket_error(conn, exc.errno or errno.EPIPE)
            return set_error(ErrorCode.SESSION_CLOSED_BY_CLIENT)
        counters.send_bytes += sent
        self._d[conn.send_word] = self.reactor.clock
        if self.publish_written:
            conn.written += sent
            self._q[conn.record + layout.C_SEND_WRITTEN] = conn.written
        if sent < len(data):
            rest = memoryview(data)[sent:]
            conn.out.append(rest)
            conn.out_bytes += len(rest)
            self.want_write(conn)
            self._queued_changed(conn)
        return True

    def sendfile(self, conn: Connection, path: str, offset: int, length: int) -> bool:
        if conn.closing:
            return set_error(ErrorCode.SESSION_CLOSED)
        try:
            file = open(path, "rb")
        except OSError as exc:
            return set_error(exc.errno or ErrorCode.SESSION_NOT_EXIST)
        size = os.fstat(file.fileno()).st_size
        if offset < 0 or offset > size:
            file.close()
            raise ValueError(f"sendfile offset {offset} is outside the file ({size} bytes)")
        remaining = size - offset if length <= 0 else min(length, size - offset)
        conn.queue_file(FileChunk(file, offset, remaining))
        self.counters.response += 1
        return True

    def sent_bytes(self, conn: Connection, count: int) -> None:
        """Bytes of the queue went out (Connection.flush and sendfile report here)."""
        self.counters.send_bytes += count
        self._d[conn.record + layout.C_LAST_SEND] = self.reactor.clock
        if self.publish_written:
            conn.written += count
            self._q[conn.record + layout.C_SEND_WRITTEN] = conn.written

    def want_write(self, conn: Connection) -> None:
        if conn.closed:
            return
        events = conn.wanted_events()
        if events != conn.events and conn.opened:
            if conn.tls is not None and events & EPOLLIN and not conn.events & EPOLLIN:
                _tls.kick(self, conn)  # reading resumes: epoll cannot see bytes OpenSSL holds
            conn.events = events
            self.reactor.modify(conn.fd, events)

    def on_writable(self, conn: Connection) -> None:
        if conn.tls is not None and not conn.opened:
            _tls.continue_handshake(self, conn)
            return
        empty = conn.flush()
        if conn.closed:
            return
        self._queued_changed(conn)
        if empty:
            if conn.closing:
                self._release(conn)
                return
            self.want_write(conn)

    def _queued_changed(self, conn: Connection) -> None:
        queued = conn.out_bytes
        self._q[conn.record + layout.C_SEND_QUEUED] = queued
        listener = conn.listener
        high = listener.high_watermark
        if high:
            if not conn.above_high_watermark and queued >= high:
                conn.above_high_watermark = True
                self.sink.on_buffer_full(conn)
            elif conn.above_high_watermark and queued <= listener.low_watermark:
                conn.above_high_watermark = False
                self.sink.on_buffer_empty(conn)
        if not conn.out:
            self._q[conn.record + layout.C_FLAGS] &= ~layout.FLAG_OVERFLOW
        if conn.held_events is not None and queued <= self.backlog_low:
            self.sink.on_drained(conn)  # (Host.hold_events)

    def wait_flushed(self, conn: Connection, timeout: float) -> bool:
        """send_wait(): block this worker until the queue of `conn` is written (BASE only)."""
        import select

        deadline = time.monotonic() + timeout
        while conn.out and not conn.closed:
            if conn.flush():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            select.select([], [conn.fd], [], remaining)
        if not conn.closed:
            self._queued_changed(conn)
            self.want_write(conn)
        return not conn.out and not conn.closed

    # -- closing ----------------------------------------------------------------------------
    def close(self, conn: Connection, *, reason: int = ErrorCode.SESSION_CLOSED_BY_SERVER, errno_: int = 0, reset: bool = False) -> bool:
        """Start closing: stop reading, tell the sink (which fires `close`), then release the
        socket once queued output is written (at once with `reset`, or after max_wait_time)."""
        if conn.closing:
            return set_error(ErrorCode.SESSION_CLOSED)
        conn.closing = True
        conn.close_reason = reason
        q = self._q
        flags = layout.FLAG_CLOSING | (layout.FLAG_CLOSED_BY_SERVER if reason == ErrorCode.SESSION_CLOSED_BY_SERVER else 0)
        q[conn.record + layout.C_FLAGS] |= flags
        if errno_:
            q[conn.record + layout.C_CLOSE_ERRNO] = errno_
        if reset or reason != ErrorCode.SESSION_CLOSED_BY_SERVER:
            conn.discard_output()
            conn.linger = False
            if reset:
                try:
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                except OSError:
                    pass
        self.want_write(conn)
        if conn.opened:
            self.sink.on_closed(conn)
        if conn.closed:
            return True
        if conn.out:
            # Graceful close: finish writing what was queued, but never wait forever on a
            # peer that stopped reading.
            conn.drain_timer = self.reactor.after(self.max_wait_time * 1000, self._drain_expired, conn)
        else:
            self._release(conn)
        return True

    def _drain_expired(self, conn: Connection) -> None:
        conn.drain_timer = None
        if not conn.closed:
            conn.discard_output()
            conn.linger = False
            self._release(conn)

    def on_socket_error(self, conn: Connection, code: int) -> None:
        if conn.closing:
            conn.discard_output()
            conn.linger = False
            self._release(conn)
            return
        if not is_disconnect(code):
            log.warning("session %d: socket error %d; closing", conn.session_id, code)
        self.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT, errno_=code)

    def _release(self, conn: Connection) -> None:
        """Unregister, close the socket and turn the shared record into a tombstone."""
        if conn.closed:
            return
        if conn.linger and conn.tls is None and self._start_linger(conn):
            return
        conn.closed = True
        if conn.drain_timer is not None:
            self.reactor.clear_timer(conn.drain_timer)
            conn.drain_timer = None
        conn.discard_output()
        if conn.opened or self.reactor.has(conn.fd):
            self.reactor.remove(conn.fd)
        if conn.tls is not None:
            _tls.goodbye(conn)  # close_notify after a graceful server-side close
        # The books first, the socket last: a peer that has seen the close then finds it in
        # stats() and exist() (a probe that waits for the server's FIN counts on it).
        self.conns.pop(conn.session_id, None)
        self.counters.close += 1
        self.counters.publish_close()
        if self.sink.holds_record(conn):
            # PROCESS mode: the worker's on_close may still call get_client_info(); the
            # record stays readable until the worker says it is done (or a timeout).
            timer = self.reactor.after(RECORD_HOLD_MS, self.release_record, conn.session_id)
            self.held_records[conn.session_id] = (conn.record, timer)
        else:
            self._q[conn.record + layout.C_SESSION] = -conn.session_id
        try:
            conn.sock.close()
        except OSError:
            pass

    def _start_linger(self, conn: Connection) -> bool:
        """After an error answer (HTTP 400, RESP -ERR): half-close and read what the peer is
        still sending for a moment. Closing with unread input would make the kernel reset the
        connection, and the peer could lose the answer before reading it (a lingering close,
        as nginx and h11 do)."""
        conn.linger = False
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return False

        def discard(_mask: int) -> None:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._release(conn)

        self.reactor.remove(conn.fd)
        self.reactor.add(conn.fd, EPOLLIN, discard)
        conn.drain_timer = self.reactor.after(LINGER_MS, self._drain_expired, conn)
        return True

    def release_record(self, session: int) -> None:
        """Turn a held record into a tombstone (the worker finished its on_close)."""
        held = self.held_records.pop(session, None)
        if held is not None:
            record, timer = held
            self.reactor.clear_timer(timer)  # (a no-op when the timer itself got us here)
            self._q[record + layout.C_SESSION] = -session

    def close_all(self, reason: int = ErrorCode.SESSION_CLOSED_BY_SERVER) -> None:
        """Close every connection (worker stop / shutdown), firing `close` for each."""
        for conn in list(self.conns.values()):
            if not conn.closing:
                self.close(conn, reason=reason)

    def drain(self, deadline: float) -> None:
        """Run the loop until queued output is written or the deadline passes, then drop the rest."""
        while any(not c.closed for c in self.conns.values()) and time.monotonic() < deadline:
            self.reactor.run_once(min(0.05, max(0.0, deadline - time.monotonic())))
        for conn in list(self.conns.values()):
            conn.discard_output()
            conn.linger = False
            self._release(conn)
