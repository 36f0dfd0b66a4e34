"""The per-connection readiness handler for plain (non-TLS) connections: the hot path.

ARCHITECTURE "Hot path": per event one recv, the codec's scan, one callback, one send. The
handler is a closure over everything it touches rather than the chain on_event ->
on_readable -> received -> sink.on_data; together with the flat send path that took the
server's user CPU per 64-byte echo from 4.1 to 3.6 us (stress/bench). TLS connections use the
plain methods (Connection.on_event -> Host.on_readable).

For an inline sink (BASE, THREAD: `sink.inline_runtime` is set) a raw packet runs the
listener's `receive` callback right here: this is the one deliberate copy of what the event
dispatcher does for `receive` (count, call, log a failure, check max_request), kept inline
because it is the hottest line of the server. Everything else a codec returns (protocol
events, replies) goes through `Host.deliver_item`.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from threadswoole.connections.connection import RECV_SIZE, Connection
from threadswoole.errors import ErrorCode
from threadswoole.loop.reactor import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT
from threadswoole.protocol import ProtocolError, Reply
from threadswoole.state import shared as layout

_EPOLLIN = EPOLLIN
_EPOLLOUT = EPOLLOUT
_READABLE = EPOLLIN | EPOLLERR | EPOLLHUP
# The first read of a raw connection asks for this much: a bytes object that small comes from
# CPython's own allocator, while os.read(fd, RECV_SIZE) mallocs 64 KiB and shrinks it for every
# 64-byte message (about 900 instructions of glibc malloc/realloc/free per read, base_echo.sh).
SMALL_READ = 512 - sys.getsizeof(b"")


def make_fast_handler(host: Any, conn: Connection) -> Callable[[int], None]:
    """The readiness handler of one plain connection: recv, account, decode, deliver.

    It reads with os.read on the raw fd (a fast call) rather than socket.recv (a varargs call
    through PyArg_ParseTuple): about 350 instructions less per read (callgrind); the fd stays
    valid while the connection is registered (it is unregistered before the socket closes).
    A raw unframed listener run inline gets a handler of its own without the codec branches:
    its codec can never change (only HTTP upgrades to WebSocket)."""
    runtime = host.sink.inline_runtime  # None: not inline (PROCESS reactor threads)
    if runtime is not None and conn.codec is None and conn.listener.protocol.name == "raw":
        return _raw_inline_handler(host, conn, runtime)
    return _codec_handler(host, conn, runtime)


def _raw_inline_handler(host: Any, conn: Connection, runtime: Any) -> Callable[[int], None]:
    """BASE/THREAD, a raw stream: every read runs `receive` right here (the hottest line).

    The request and its bytes are counted by appending the size to `runtime.receipts`, which
    Runtime.settle adds to the totals before any publication or read of them (stats() inside
    the callback included); with max_request set, the handler settles them at once, so every
    max_request check (this one, and the dispatcher's for another port) sees the exact count.

    It reads SMALL_READ bytes at a time while the peer sends small messages (see SMALL_READ),
    and RECV_SIZE bytes once a read fills the small buffer, until the messages are small again.
    Its last-receive stamp is written once per layout.STAMP_RESOLUTION (see there)."""
    read = host.read_fd  # os.read, or loop/held_io.py's in THREAD mode
    fd = conn.fd
    reactor = host.reactor
    shared = host.state.d
    last_recv_word = conn.record + layout.C_LAST_RECV
    server = host.sink.server
    reactor_id = host.reactor_id
    session = conn.session_id
    on_receive = conn.listener.on_receive
    max_request = runtime.max_request
    count = runtime.receipts.append  # not two increments: about 270 instructions less per request
    size = SMALL_READ  # how much the next read asks for
    check = SMALL_READ  # a read of this many bytes or more takes the branch that adapts `size`
    stamp_due = 0.0  # the loop-turn time from which a read stamps C_LAST_RECV again
    resolution = layout.STAMP_RESOLUTION

    def on_event(mask: int) -> None:
        nonlocal size, check, stamp_due
        if mask != _EPOLLIN and mask & _EPOLLOUT:  # (an int compare is specialized, `&` is not)
            host.on_writable(conn)
            if conn.closed or not mask & _READABLE:
                return
        if conn.closing:
            return
        try:
            data = read(fd, size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            host.on_socket_error(conn, exc.errno or 0)
            return
        if not data:
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT)
            return
        received = len(data)
        if received >= check:  # the small buffer filled, or reads are large already
            if size == SMALL_READ:
                size, check = RECV_SIZE, 0
                data = read_rest(host, conn, data)
                received = len(data)
            elif received < SMALL_READ:
                size = check = SMALL_READ
        count(received)  # one request of `received` bytes, counted by Runtime.settle
        clock = reactor.clock
        if clock >= stamp_due:  # (about 30 instructions against 330 for the store)
            shared[last_recv_word] = clock
            stamp_due = clock + resolution
        try:
            on_receive(server, session, reactor_id, data)
        except Exception:
            runtime.failed("receive")
        if max_request:
            runtime.settle()  # exact, for this check and for any other port's after it
            if runtime.requests >= max_request:
                runtime.reached_max_request()

    return on_event


def read_rest(host: Any, conn: Connection, data: bytes) -> bytes:
    """A read of SMALL_READ bytes filled its buffer: append what else the socket holds now, up
    to RECV_SIZE in all (so a burst arrives in one piece, as with one large read). A failed
    read is reported after `data` is delivered (the error is the socket's once; later reads
    see only the end of the stream), at the end of this loop iteration."""
    try:
        rest = os.read(conn.fd, RECV_SIZE - SMALL_READ)
    except (BlockingIOError, InterruptedError):
        return data
    except OSError as exc:
        code = exc.errno or 0
        host.reactor.defer(lambda: None if conn.closing else host.on_socket_error(conn, code))
        return data
    return data + rest if rest else data


def _codec_handler(host: Any, conn: Connection, runtime: Any) -> Callable[[int], None]:
    """Any other plain connection: through its codec (or raw to a PROCESS worker). Reads adapt
    their size as in the raw handler."""
    read = host.read_fd  # os.read, or loop/held_io.py's in THREAD mode
    fd = conn.fd
    counters = host.counters
    reactor = host.reactor
    shared = host.state.d
    last_recv_word = conn.record + layout.C_LAST_RECV
    sink = host.sink
    deliver = sink.on_data
    deliver_event = sink.on_event
    deliver_item = host.deliver_item
    server = sink.server
    reactor_id = host.reactor_id
    session = conn.session_id
    on_receive = conn.listener.on_receive
    size = SMALL_READ  # as in the raw handler above
    check = SMALL_READ

    def on_event(mask: int) -> None:
        nonlocal size, check
        if mask != _EPOLLIN and mask & _EPOLLOUT:  # (an int compare is specialized, `&` is not)
            host.on_writable(conn)
            if conn.closed or not mask & _READABLE:
                return
        if conn.closing:
            return
        try:
            data = read(fd, size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            host.on_socket_error(conn, exc.errno or 0)
            return
        if not data:
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT)
            return
        received = len(data)
        if received >= check:
            if size == SMALL_READ:
                size, check = RECV_SIZE, 0
                data = read_rest(host, conn, data)
                received = len(data)
            elif received < SMALL_READ:
                size = check = SMALL_READ
        counters.recv_bytes += received
        codec = conn.codec  # read each time: an upgrade may replace it
        if codec is None:
            shared[last_recv_word] = reactor.clock
            deliver(conn, data)
            return
        try:
            items = codec.feed(data)
        except ProtocolError as exc:
            host.protocol_failed(conn, exc)
            return
        if items or not codec.reading_head:  # part of a head is not activity (Codec.reading_head)
            shared[last_recv_word] = reactor.clock
        for item in items:
            if conn.closing:
                return
            kind = type(item)
            if kind is not bytes:
                if kind is Reply:
                    deliver_item(conn, item)
                else:
                    deliver_event(conn, item)  # a parsed protocol event (HTTP, WebSocket, RESP)
                continue
            if runtime is None:
                deliver(conn, item)
                continue
            runtime.requests += 1  # a framed packet, inline: as in the raw handler above
            try:
                on_receive(server, session, reactor_id, item)
            except Exception:
                runtime.failed("receive")
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()

    return on_event
