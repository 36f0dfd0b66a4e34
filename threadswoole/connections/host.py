"""The connections one reactor owns: reading through each connection's codec, writing, closing.

A Host runs on its reactor's thread and reports what happens to a *sink*: in BASE and THREAD
modes the sink runs the user's callbacks inline; in PROCESS mode it forwards events to worker
processes over pipes. What the codec returns is delivered in order: packets and parsed events
go to the sink, a codec's own `Reply` (a pong, `100 Continue`) is written here at once. A call
for a session this Host does not own goes to the *forwarder* it was built with (another
thread's queue, another process's mailbox, or a refusal). Everything mode-specific lives in
the sink and the forwarder, so codecs, flow control and TLS are written once for every mode.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from typing import Any, Protocol

from threadswoole._context import set_error
from threadswoole.connections import operations
from threadswoole.connections import tls as _tls
from threadswoole.connections.connection import WOULD_BLOCK, Connection, FileChunk, is_disconnect
from threadswoole.connections.hot_path import make_fast_handler
from threadswoole.errors import ErrorCode
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.protocol import ProtocolError, Reply
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters

log = logging.getLogger("threadswoole")
_LINGER_RESET = struct.pack("ii", 1, 0)
RECORD_HOLD_MS = 10_000
LINGER_MS = 2_000  # after an error answer: read and discard for this long before closing
MAX_HELD_PUSHES = 1024


class Sink(Protocol):
    """Where a Host reports connection events (`inline_runtime` is set for inline sinks)."""

    inline_runtime: Any
    server: Any

    def holds_record(self, conn: Connection) -> bool: ...
    def on_open(self, conn: Connection) -> None: ...
    def on_data(self, conn: Connection, data: bytes) -> None: ...
    def on_event(self, conn: Connection, event: Any) -> None: ...
    def on_closed(self, conn: Connection) -> None: ...
    def on_buffer_full(self, conn: Connection) -> None: ...
    def on_buffer_empty(self, conn: Connection) -> None: ...


class Forwarder(Protocol):
    """Carries an operation on a session this Host does not own to the one that does."""

    def forward(self, op: int, session: int, payload: bytes) -> bool: ...


class Host:
    """Owns the connections of one reactor and enforces the per-connection limits."""

    def __init__(self, *, settings: Any, state: layout.SharedState, reactor: Reactor, reactor_id: int, counters: StatCounters, sink: Sink | None, forwarder: Forwarder, publish_written: bool = False) -> None:
        """`sink` may be given later (set the attribute before the first connection arrives):
        a worker's sink needs its dispatcher, which needs the router, which needs this Host."""
        self.state = state
        self.reactor = reactor
        self.reactor_id = reactor_id
        self.counters = counters
        self.sink: Sink = sink  # type: ignore[assignment]
        self.forwarder = forwarder
        # PROCESS reactor threads publish, per connection, how many bytes of the workers'
        # sends they wrote: a worker compares that with what it sent to see the queue (1008).
        self.publish_written = publish_written
        self.conns: dict[int, Connection] = {}
        self.held_records: dict[int, tuple[int, int]] = {}  # closed session -> (record, expiry timer)
        self.buffer_output_size: int = settings["buffer_output_size"]
        self.socket_buffer_size: int = settings["socket_buffer_size"]
        self.max_wait_time: float = settings["max_wait_time"]
        self._q = state.q
        self._d = state.d

    # -- adopting sockets -------------------------------------------------------------------
    def adopt(self, sock: socket.socket, session_id: int, listener: Any, remote: Any) -> Connection | None:
        """Take ownership of an accepted socket whose shared record the acceptor published.
        If that fails, the connection is refused cleanly: a live record that nobody owns would
        count as an open connection forever (stats, exist, max_conn)."""
        try:
            return self._adopt(sock, session_id, listener, remote)
        except Exception:
            log.exception("could not take over session %d; closing it", session_id)
            self.refuse(sock, session_id)
            return None

    take_connection = adopt  # the acceptor's hand-off, when this Host runs on the accepting thread

    def refuse(self, sock: socket.socket, session_id: int) -> None:
        """Close a connection that never became ours: socket, record and close count."""
        conn = self.conns.pop(session_id, None)
        if conn is not None and self.reactor.has(conn.fd):
            self.reactor.remove(conn.fd)
        try:
            sock.close()
        except OSError:
            pass
        self._q[self.state.record_base(session_id) + layout.C_SESSION] = -session_id
        self.counters.close += 1
        self.counters.publish_close()

    def _adopt(self, sock: socket.socket, session_id: int, listener: Any, remote: Any) -> Connection:
        sock.setblocking(False)
        conn = Connection(self, sock, session_id, listener, self.state.record_base(session_id), remote)
        self.conns[session_id] = conn
        if listener.tcp_nodelay and listener.is_tcp:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        conn.delayed = listener.delay_receive
        if conn.delayed:
            self._q[conn.record + layout.C_FLAGS] |= layout.FLAG_DELAYED
        if listener.tls_context is not None:
            _tls.start_handshake(self, conn)
            return conn
        self.open(conn)
        return conn

    def open(self, conn: Connection) -> None:
        """Register the socket and deliver `connect` (after the TLS handshake, for TLS)."""
        conn.opened = True
        self._register(conn)
        self.sink.on_open(conn)

    def _register(self, conn: Connection) -> None:
        conn.events = conn.wanted_events()
        handler = conn.on_event if conn.tls is not None else make_fast_handler(self, conn)
        self.reactor.add(conn.fd, conn.events, handler)

    # -- moving connections between threads (THREAD mode: reload keeps them) -----------------
    def detach_all(self) -> list[Connection]:
        """Give up every open connection without closing it (its socket, codec, queue and
        shared record stay as they are), so another Host in this process can take it over."""
        moved = []
        for conn in list(self.conns.values()):
            if conn.closing or not conn.opened:
                continue
            if conn.drain_timer is not None:
                self.reactor.clear_timer(conn.drain_timer)
                conn.drain_timer = None
            self.reactor.remove(conn.fd)
            del self.conns[conn.session_id]
            moved.append(conn)
        return moved

    def attach(self, conn: Connection, owner_id: int) -> None:
        """Take over a connection another Host of this process detached (on our thread)."""
        conn.host = self
        self.conns[conn.session_id] = conn
        self._q[conn.record + layout.C_REACTOR] = self.reactor_id
        self._q[conn.record + layout.C_WORKER] = owner_id
        self._q[conn.record + layout.C_OWNER_PID] = os.getpid()
        self._register(conn)

    # -- reading ----------------------------------------------------------------------------
    def on_readable(self, conn: Connection) -> None:
        """A TLS connection is readable (plain connections use the hot path's handler)."""
        if not conn.closing:
            _tls.tls_readable(self, conn)  # handshake, or decrypt and drain OpenSSL's buffer

    def received(self, conn: Connection, data: bytes) -> None:
        """Account for bytes read from `conn` (TLS reads arrive here), then decode and deliver."""
        self.counters.recv_bytes += len(data)
        self._d[conn.record + layout.C_LAST_RECV] = self.reactor.clock
        codec = conn.codec
        if codec is None:
            self.sink.on_data(conn, data)
        else:
            self.feed(conn, codec, data)

    def feed(self, conn: Connection, codec: Any, data: bytes) -> None:
        """Run the connection's codec over `data` and deliver what it returns, in order."""
        try:
            items = codec.feed(data)
        except ProtocolError as exc:
            self.protocol_failed(conn, exc)
            return
        for item in items:
            if conn.closing:
                return
            self.deliver_item(conn, item)

    def deliver_item(self, conn: Connection, item: Any) -> None:
        """One thing a codec returned: a packet (bytes), a Reply for the peer, or an Event."""
        kind = type(item)
        if kind is bytes:
            self.sink.on_data(conn, item)
        elif kind is Reply:
            self.send(conn, item.data)
            if item.close and not conn.closing:
                self.close(conn)
        else:
            self.sink.on_event(conn, item)

    def protocol_failed(self, conn: Connection, exc: ProtocolError) -> None:
        """Bad or oversized input: deliver what was complete before it, answer with the
        protocol's error response if it has one, count it, and close the connection (a reset
        when there is nothing to say, so a hostile peer cannot hold the socket open)."""
        for item in exc.events:
            if conn.closing:
                break
            self.deliver_item(conn, item)
        self.counters.protocol_errors += 1
        log.info("session %d: %s; closing the connection", conn.session_id, exc)
        if conn.closing:
            return
        if exc.response:
            self.send(conn, exc.response)
            conn.linger = True
            self.close(conn)
        else:
            self.close(conn, reset=True)

    def switch_codec(self, conn: Connection, codec: Any) -> None:
        """Replace the connection's codec (HTTP -> WebSocket). The bytes the old one held back
        go to the new one, after the current callback returns (the worker that asked for the
        switch finishes first: a WebSocket `open` runs before the first `message`)."""
        old = conn.codec
        held = old.detach() if old is not None else b""
        conn.codec = codec
        conn.listener.protocol.codec_switched(self._q, conn.record, codec)
        pushes, conn.held_pushes = conn.held_pushes, None
        encode = getattr(codec, "encode_push", None)
        for payload in pushes or ():
            if encode is not None and not conn.closing:
                self.write(conn, encode(payload))
        if held:
            self.reactor.defer(lambda: self.feed(conn, codec, held) if not conn.closing and conn.codec is codec else None)

    def hold_push(self, conn: Connection, payload: bytes) -> None:
        """A PUSH that arrived before the codec switch it needs (PROCESS: another worker pushed
        right after this connection's handshake was accepted): written by switch_codec."""
        if conn.held_pushes is None:
            conn.held_pushes = []
        if len(conn.held_pushes) >= MAX_HELD_PUSHES:
            log.warning("session %d: %d pushes waiting for its codec switch; dropping one", conn.session_id, MAX_HELD_PUSHES)
            return
        conn.held_pushes.append(payload)

    def resume_codec(self, conn: Connection) -> None:
        """An upgrade was refused: the codec parses what it held back as its own protocol."""
        resume = getattr(conn.codec, "resume", None)
        if resume is None or conn.closing:
            return
        try:
            items = resume()
        except ProtocolError as exc:
            self.protocol_failed(conn, exc)
            return
        for item in items:
            if conn.closing:
                return
            self.deliver_item(conn, item)

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
        ends of a socketpair; the client side is about 4,100 of them)."""
        conns_get = self.conns.get
        write = os.write  # a fast call, unlike socket.send (see hot_path.py)
        counters = self.counters
        words = self._d
        reactor = self.reactor
        limit = self.buffer_output_size

        def send_function(session: Any, data: Any, server_socket: int = -1) -> bool:
            conn = conns_get(session)
            if conn is None or conn.out or conn.closing or conn.tls is not None or len(data) > limit or type(session) is not int:
                return slow(session, data, server_socket)  # (TLS writes go through OpenSSL)
            try:
                sent = write(conn.fd, data)  # bytes-like only: a str raises TypeError
            except (OSError, TypeError):
                return slow(session, data, server_socket)  # blocked, broke, or not bytes: the full path says
            counters.response += 1
            counters.send_bytes += sent
            words[conn.send_word] = reactor.clock
            if sent < len(data):
                self.queue_rest(conn, data, sent)
            return True

        return send_function

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
        try:
            conn.sock.close()
        except OSError:
            pass
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

    # -- flow control -----------------------------------------------------------------------
    def set_paused(self, conn: Connection, paused: bool) -> bool:
        if conn.closing:
            return set_error(ErrorCode.SESSION_CLOSED)
        conn.paused = paused
        self._set_flag(conn, layout.FLAG_PAUSED, paused)
        self.want_write(conn)
        return True

    def confirm(self, conn: Connection) -> bool:
        if conn.closing or not conn.delayed:
            return set_error(ErrorCode.SESSION_NOT_EXIST if conn.closing else ErrorCode.SESSION_INVALID_ID)
        conn.delayed = False
        self._set_flag(conn, layout.FLAG_DELAYED, False)
        self.want_write(conn)
        return True

    def protect(self, conn: Connection, value: bool) -> bool:
        conn.protected = value
        self._set_flag(conn, layout.FLAG_PROTECTED, value)
        return True

    def bind_uid(self, conn: Connection, uid: int) -> bool:
        if conn.uid:
            return set_error(ErrorCode.SESSION_INVALID_ID)
        conn.uid = uid & 0xFFFF_FFFF
        self._q[conn.record + layout.C_UID] = conn.uid
        return True

    def _set_flag(self, conn: Connection, flag: int, on: bool) -> None:
        word = conn.record + layout.C_FLAGS
        self._q[word] = (self._q[word] | flag) if on else (self._q[word] & ~flag)
