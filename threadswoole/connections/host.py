"""The connections one reactor owns: reading, framing, writing, closing, heartbeat, flow control.

A Host runs on its reactor's thread and reports what happens to a *sink*: in BASE and THREAD
modes the sink runs the user's callbacks inline; in PROCESS mode it forwards events to worker
processes over pipes. Everything mode-specific lives in the sink, so framing, flow control
and TLS are written once and every mode gets them.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from typing import Any, Callable, Protocol

from threadswoole._context import set_error
from threadswoole.errors import ErrorCode
from threadswoole.protocol import FramingError
from threadswoole.state import shared as layout
from threadswoole.connections import tls
from threadswoole.state.counters import StatCounters
from threadswoole.connections.connection import RECV_SIZE, WOULD_BLOCK, Connection, FileChunk, is_disconnect
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.connections.hot_path import make_fast_handler

log = logging.getLogger("threadswoole")
_LINGER_RESET = struct.pack("ii", 1, 0)


RECORD_HOLD_MS = 10_000


class Sink(Protocol):
    """Where a Host reports connection events."""

    def holds_record(self, conn: Connection) -> bool: ...
    def on_open(self, conn: Connection) -> None: ...
    def on_data(self, conn: Connection, data: bytes) -> None: ...
    def on_closed(self, conn: Connection) -> None: ...
    def on_buffer_full(self, conn: Connection) -> None: ...
    def on_buffer_empty(self, conn: Connection) -> None: ...


class Host:
    """Owns the connections of one reactor and enforces the per-connection limits."""

    def __init__(self, *, server: Any, state: layout.SharedState, reactor: Reactor, reactor_id: int, counters: StatCounters, sink: Sink) -> None:
        self.server = server
        self.state = state
        self.reactor = reactor
        self.reactor_id = reactor_id
        self.counters = counters
        self.sink = sink
        self.conns: dict[int, Connection] = {}
        self.held_records: dict[int, tuple[int, int]] = {}  # closed session -> (record, expiry timer)
        setting = server.setting
        self.buffer_output_size: int = setting["buffer_output_size"]
        self.socket_buffer_size: int = setting["socket_buffer_size"]
        self.max_wait_time: float = setting["max_wait_time"]
        self._q = state.q
        self._d = state.d
        self._heartbeat_timer: int | None = None

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
            tls.start_handshake(self, conn)
            return conn
        self.open(conn)
        return conn

    def open(self, conn: Connection) -> None:
        """Register the socket and deliver `connect` (after the TLS handshake, for TLS)."""
        conn.opened = True
        conn.events = conn.wanted_events()
        handler = conn.on_event if conn.tls is not None else make_fast_handler(self, conn)
        self.reactor.add(conn.fd, conn.events, handler)
        self.sink.on_open(conn)

    # -- reading ----------------------------------------------------------------------------
    def on_readable(self, conn: Connection) -> None:
        if conn.closing:
            return
        if conn.tls is not None:
            tls.tls_readable(self, conn)  # handshake, or decrypt and drain OpenSSL's buffer
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.on_socket_error(conn, exc.errno or 0)
            return
        if not data:
            self.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT)
            return
        self.received(conn, data)

    def received(self, conn: Connection, data: bytes) -> None:
        """Account, frame and deliver bytes read from `conn` (TLS reads arrive here too)."""
        self.counters.recv_bytes += len(data)
        self._d[conn.record + layout.C_LAST_RECV] = self.reactor.clock
        framer = conn.framer
        if framer is None:
            self.sink.on_data(conn, data)
            return
        try:
            packets = framer.feed(data)
        except FramingError as exc:
            self.framing_failed(conn, exc)
            return
        sink = self.sink
        for packet in packets:
            if conn.closing:
                break
            sink.on_data(conn, packet)

    def framing_failed(self, conn: Connection, exc: FramingError) -> None:
        """Bad or oversized input: deliver the packets completed before it, then close (reset)."""
        for packet in exc.packets:
            if conn.closing:
                break
            self.sink.on_data(conn, packet)
        self.counters.protocol_errors += 1
        log.warning("session %d: %s; closing the connection", conn.session_id, exc)
        if not conn.closing:
            self.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)

    # -- writing ----------------------------------------------------------------------------
    def send_session(self, session: int, data: Any) -> bool:
        """`Server.send` for the calling worker: its own session here, any other via the router."""
        conn = self.conns.get(session)
        if conn is None:
            return self.remote_send(session, data)
        return self.send(conn, data)

    def remote_send(self, session: int, data: Any) -> bool:
        """Replaced by the router: forward to the owner or fail with 1004/1005."""
        return set_error(ErrorCode.SESSION_NOT_EXIST)

    def send(self, conn: Connection, data: Any) -> bool:
        """The checks of `Server.send` for a connection this reactor owns, then write first,
        queue the rest (hot path: Connection.write and sent_bytes are inlined here)."""
        if conn.closing:
            return set_error(ErrorCode.SESSION_CLOSING if not conn.closed else ErrorCode.SESSION_CLOSED)
        size = len(data)
        if size > self.buffer_output_size:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        counters = self.counters
        if conn.out:
            if conn.out_bytes + size > self.socket_buffer_size:
                self._q[conn.record + layout.C_FLAGS] |= layout.FLAG_OVERFLOW
                return set_error(ErrorCode.OUTPUT_BUFFER_OVERFLOW)
            conn.out.append(data)
            conn.out_bytes += size
            counters.response += 1
            self._queued_changed(conn)
            return True
        try:
            sent = conn.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self.on_socket_error(conn, exc.errno or errno.EPIPE)
            return set_error(ErrorCode.SESSION_CLOSED_BY_CLIENT)
        counters.response += 1
        counters.send_bytes += sent
        self._d[conn.send_word] = self.reactor.clock
        if sent < size:
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
        size = __import__("os").fstat(file.fileno()).st_size
        if offset < 0 or offset > size:
            file.close()
            raise ValueError(f"sendfile offset {offset} is outside the file ({size} bytes)")
        remaining = size - offset if length <= 0 else min(length, size - offset)
        conn.queue_file(FileChunk(file, offset, remaining))
        self.counters.response += 1
        return True

    def sent_bytes(self, conn: Connection, count: int) -> None:
        self.counters.send_bytes += count
        self._d[conn.record + layout.C_LAST_SEND] = self.reactor.clock

    def want_write(self, conn: Connection) -> None:
        if conn.closed:
            return
        events = conn.wanted_events()
        if events != conn.events and conn.opened:
            if conn.tls is not None and events & EPOLLIN and not conn.events & EPOLLIN:
                tls.kick(self, conn)  # reading resumes: epoll cannot see bytes OpenSSL holds
            conn.events = events
            self.reactor.modify(conn.fd, events)

    def on_writable(self, conn: Connection) -> None:
        if conn.tls is not None and not conn.opened:
            tls.continue_handshake(self, conn)
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
            self._release(conn)

    def on_socket_error(self, conn: Connection, code: int) -> None:
        if conn.closing:
            conn.discard_output()
            self._release(conn)
            return
        if not is_disconnect(code):
            log.warning("session %d: socket error %d; closing", conn.session_id, code)
        self.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT, errno_=code)

    def _release(self, conn: Connection) -> None:
        """Unregister, close the socket and turn the shared record into a tombstone."""
        if conn.closed:
            return
        conn.closed = True
        if conn.drain_timer is not None:
            self.reactor.clear_timer(conn.drain_timer)
            conn.drain_timer = None
        conn.discard_output()
        if conn.opened or self.reactor.has(conn.fd):
            self.reactor.remove(conn.fd)
        if conn.tls is not None:
            tls.goodbye(conn)  # close_notify after a graceful server-side close
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
            self._release(conn)

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

    def apply(self, conn: Connection, op: int, payload: bytes, src: int) -> None:
        """An operation another worker asked for on a connection we own (PROCESS reactor
        threads, BASE and THREAD workers): the same effect as the call made here."""
        from threadswoole.ipc import messages
        if op == messages.T_SEND:
            overflowing = self._q[conn.record + layout.C_FLAGS] & layout.FLAG_OVERFLOW
            if not self.send(conn, payload):
                from threadswoole._context import current

                code = current().last_error
                if code not in (ErrorCode.SESSION_CLOSING, ErrorCode.SESSION_CLOSED) and not overflowing:
                    log.warning("session %d: output buffer full, dropping data from worker %d until it drains (error %d)", conn.session_id, src, code)
        elif op == messages.T_CLOSE_REQUEST:
            if not conn.closing:
                self.close(conn, reset=payload == b"\x01")
        elif op in (messages.T_PAUSE, messages.T_RESUME):
            self.set_paused(conn, op == messages.T_PAUSE)
        elif op == messages.T_PROTECT:
            self.protect(conn, payload == b"\x01")
        elif op == messages.T_CONFIRM:
            self.confirm(conn)
        elif op == messages.T_BIND:
            uid = int.from_bytes(payload, "big")
            if not conn.uid:
                conn.uid = uid
                self._q[conn.record + layout.C_UID] = uid
        elif op == messages.T_SENDFILE:
            import pickle

            path, offset, length = pickle.loads(payload)
            try:
                self.sendfile(conn, path, offset, length)
            except ValueError as exc:
                log.warning("sendfile from worker %d failed: %s", src, exc)

    # -- flow control -----------------------------------------------------------------------
    def set_paused(self, conn: Connection, paused: bool) -> bool:
        if conn.closing:
            return set_error(ErrorCode.SESSION_CLOSED)
        conn.paused = paused
        flag = layout.FLAG_PAUSED
        self._q[conn.record + layout.C_FLAGS] = (self._q[conn.record + layout.C_FLAGS] | flag) if paused else (self._q[conn.record + layout.C_FLAGS] & ~flag)
        self.want_write(conn)
        return True

    def confirm(self, conn: Connection) -> bool:
        if conn.closing or not conn.delayed:
            return set_error(ErrorCode.SESSION_NOT_EXIST if conn.closing else ErrorCode.SESSION_INVALID_ID)
        conn.delayed = False
        self._q[conn.record + layout.C_FLAGS] &= ~layout.FLAG_DELAYED
        self.want_write(conn)
        return True

    def protect(self, conn: Connection, value: bool) -> bool:
        conn.protected = value
        flags = self._q[conn.record + layout.C_FLAGS]
        self._q[conn.record + layout.C_FLAGS] = (flags | layout.FLAG_PROTECTED) if value else (flags & ~layout.FLAG_PROTECTED)
        return True

    def bind_uid(self, conn: Connection, uid: int) -> bool:
        if conn.uid:
            return set_error(ErrorCode.SESSION_INVALID_ID)
        conn.uid = uid & 0xFFFF_FFFF
        self._q[conn.record + layout.C_UID] = conn.uid
        return True

    # -- heartbeat --------------------------------------------------------------------------
    def idle_connections(self, now: float, default_idle: float) -> list[Connection]:
        idle = []
        for conn in self.conns.values():
            if conn.protected or conn.closing:
                continue
            limit = conn.listener.heartbeat_idle_time or default_idle
            if limit and now - self._d[conn.record + layout.C_LAST_RECV] > limit:
                idle.append(conn)
        return idle

    def heartbeat(self, close: bool, default_idle: float) -> list[int]:
        idle = self.idle_connections(time.time(), default_idle)
        if close:
            for conn in idle:
                self.counters.heartbeat_closes += 1
                self.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)
        return sorted(conn.session_id for conn in idle)

    def start_heartbeat(self, interval: float, idle_time: float) -> None:
        def check(_timer_id: int) -> None:
            self.heartbeat(True, idle_time)

        self._heartbeat_timer = self.reactor.internal_tick(max(1.0, interval * 1000), check)

    def each(self, fn: Callable[[Connection], Any]) -> None:
        for conn in list(self.conns.values()):
            fn(conn)


def readable_events() -> int:
    return EPOLLIN
