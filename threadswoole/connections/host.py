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

import collections
import logging
import os
import socket
from typing import Any, Protocol

from threadswoole._context import set_error
from threadswoole.connections import tls as _tls
from threadswoole.connections.connection import Connection
from threadswoole.connections.host_output import HostOutput
from threadswoole.connections.hot_path import make_fast_handler
from threadswoole.errors import ErrorCode
from threadswoole.loop.reactor import Reactor
from threadswoole.protocol import ProtocolError, Reply
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters

log = logging.getLogger("threadswoole")
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
    def on_protocol_failure(self, conn: Connection, response: bytes) -> None: ...
    def on_drained(self, conn: Connection) -> None: ...


class Discarding:
    """The codec of a connection whose input broke the protocol while its answer is on its way
    from a worker: what the client sends meanwhile is read and dropped."""

    __slots__ = ()
    reading_head = False

    def feed(self, data: bytes) -> list[Any]:
        return []

    def detach(self) -> bytes:
        return b""


DISCARDING = Discarding()


class Forwarder(Protocol):
    """Carries an operation on a session this Host does not own to the one that does."""

    def forward(self, op: int, session: int, payload: bytes) -> bool: ...


class HeldInput:
    """Stands in for a new codec between a switch and the deferred feed of the bytes the old
    codec held: whichever comes first (the next read, or the deferred call) hands the held bytes
    to the new codec ahead of anything read after them, and puts the new codec in place."""

    __slots__ = ("conn", "codec", "held")
    reading_head = False

    def __init__(self, conn: Connection, codec: Any, held: bytes) -> None:
        self.conn, self.codec, self.held = conn, codec, held

    def take(self) -> bytes:
        self.conn.codec = self.codec
        held, self.held = self.held, b""
        return held

    def feed(self, data: bytes) -> list[Any]:
        return self.codec.feed(self.take() + data)

    def encode_push(self, payload: bytes) -> bytes:
        return self.codec.encode_push(payload)


class Host(HostOutput):
    """Owns the connections of one reactor and enforces the per-connection limits: adoption,
    reading through each connection's codec, codec switching and flow control here; writing,
    queueing and closing in HostOutput (host_output.py)."""

    def __init__(self, *, settings: Any, state: layout.SharedState, reactor: Reactor, reactor_id: int, counters: StatCounters, sink: Sink | None, forwarder: Forwarder, publish_written: bool = False, socket_io: tuple[Any, Any] | None = None) -> None:
        """`sink` may be given later (set the attribute before the first connection arrives):
        a worker's sink needs its dispatcher, which needs the router, which needs this Host.
        `socket_io` is the (read, write) pair plain connections use instead of os.read/os.write
        (THREAD mode on a GIL build: loop/held_io.py)."""
        self.state = state
        self.reactor = reactor
        self.reactor_id = reactor_id
        self.counters = counters
        self.sink: Sink = sink  # type: ignore[assignment]
        self.forwarder = forwarder
        # PROCESS reactor threads publish, per connection, how many bytes of the workers'
        # sends they wrote: a worker compares that with what it sent to see the queue (1008).
        self.publish_written = publish_written
        self.read_fd, self.write_fd = socket_io or (os.read, os.write)
        self.conns: dict[int, Connection] = {}
        self.held_records: dict[int, tuple[int, int]] = {}  # closed session -> (record, expiry timer)
        self.buffer_output_size: int = settings["buffer_output_size"]
        self.socket_buffer_size: int = settings["socket_buffer_size"]
        # A connection whose answers queue past backlog_limit (its client pipelines and does
        # not read) has its next events parked and is not read until the queue is under
        # backlog_low (see hold_events): TCP slows the client, no answer fails for room.
        self.backlog_limit = self.socket_buffer_size // 2
        self.backlog_low = self.socket_buffer_size // 4
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
        codec = conn.codec
        if codec is None:
            self._d[conn.record + layout.C_LAST_RECV] = self.reactor.clock
            self.sink.on_data(conn, data)
            return
        try:
            items = codec.feed(data)
        except ProtocolError as exc:
            self.protocol_failed(conn, exc)
            return
        if items or not codec.reading_head:  # part of a head is not activity (Codec.reading_head)
            self._d[conn.record + layout.C_LAST_RECV] = self.reactor.clock
        for item in items:
            if conn.closing:
                return
            self.deliver_item(conn, item)

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
        conn.codec = DISCARDING  # what the client sends from here on is dropped
        if conn.held_events is not None:
            conn.held_events.append(exc)  # answered after the events parked before it
            return
        self.answer_failure(conn, exc)

    def answer_failure(self, conn: Connection, exc: ProtocolError) -> None:
        """The answer to a protocol error goes behind the answers to the events before it, so
        it goes where those are answered (the event dispatcher, inline or in a PROCESS worker),
        which writes it and closes (a lingering close when there is an answer, else a reset)."""
        conn.linger = bool(exc.response)
        self.sink.on_protocol_failure(conn, exc.response)

    # -- a backlogged connection ---------------------------------------------------------------
    def hold_events(self, conn: Connection) -> None:
        """The sink found `conn` backlogged: park its next protocol events and stop reading it
        until the sink calls `release_events` (its answers drained)."""
        if conn.held_events is None and not conn.closing:
            conn.held_events = collections.deque()
            self.want_write(conn)

    def release_events(self, conn: Connection) -> None:
        """Deliver the parked events, in order, until the sink holds again; then read again."""
        held = conn.held_events
        if held is None or conn.closing:
            return
        conn.held_events = None
        while held:
            item = held.popleft()
            if isinstance(item, ProtocolError):  # parked by protocol_failed
                self.answer_failure(conn, item)
                return
            self.sink.on_event(conn, item)
            if conn.closing:
                return
            if conn.held_events is not None:  # backlogged again: the rest stays parked
                conn.held_events.extend(held)
                return
        self.want_write(conn)

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
            waiting = conn.codec = HeldInput(conn, codec, held)
            self.reactor.defer(lambda: self.feed(conn, codec, waiting.take()) if not conn.closing and conn.codec is waiting else None)

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

    def mark_owner_leaving(self) -> None:
        """Flag every open session as owned by a worker that no longer reads its mailbox (a
        draining BASE worker): other workers' operations on them fail at their call."""
        for conn in self.conns.values():
            self._set_flag(conn, layout.FLAG_OWNER_LEAVING, True)

    def _set_flag(self, conn: Connection, flag: int, on: bool) -> None:
        word = conn.record + layout.C_FLAGS
        self._q[word] = (self._q[word] | flag) if on else (self._q[word] & ~flag)
