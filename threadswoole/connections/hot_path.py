"""The per-connection readiness handler for plain (non-TLS) connections: the hot path.

ARCHITECTURE "Hot path": per event one recv, the framer's scan, one callback, one send.
The handler is a closure over everything it touches rather than a chain of Host methods;
together with the flat send path that took the server's user CPU per 64-byte echo from
4.1 to 3.6 us (stress/bench). TLS connections use the plain methods (Connection.on_event).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from threadswoole.errors import ErrorCode
from threadswoole.protocol import FramingError
from threadswoole.state import shared as layout
from threadswoole.connections.connection import RECV_SIZE, Connection
from threadswoole.loop.reactor import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT
from threadswoole.workers.runtime import InlineSink

if TYPE_CHECKING:
    from threadswoole.connections.host import Host

_EPOLLOUT = EPOLLOUT
_READABLE = EPOLLIN | EPOLLERR | EPOLLHUP


def make_fast_handler(host: "Host", conn: Connection) -> Callable[[int], None]:
    """The per-connection readiness handler: recv, account, frame, deliver, in one frame.

    This is the hot path (ARCHITECTURE "Hot path"), so it is a closure over everything it
    touches instead of the chain on_event -> on_readable -> received -> sink.on_data:
    together with the flat send path that took the server's user CPU per 64-byte echo
    from 4.1 to 3.6 us. TLS connections use the plain methods (Connection.on_event).
    """
    sock_recv = conn.sock.recv
    counters = host.counters
    reactor = host.reactor
    shared = host._d
    last_recv_word = conn.record + layout.C_LAST_RECV
    framer = conn.framer
    sink = host.sink
    inline = isinstance(sink, InlineSink)
    deliver = sink.on_data
    runtime = getattr(sink, "runtime", None)
    server = getattr(sink, "server", None)
    reactor_id = host.reactor_id
    session = conn.session_id
    on_receive = conn.listener.on_receive

    def on_event(mask: int) -> None:
        if mask & _EPOLLOUT:
            host.on_writable(conn)
            if conn.closed or not mask & _READABLE:
                return
        if conn.closing:
            return
        try:
            data = sock_recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            host.on_socket_error(conn, exc.errno or 0)
            return
        if not data:
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT)
            return
        counters.recv_bytes += len(data)
        shared[last_recv_word] = reactor.clock
        if framer is None:
            if not inline:
                deliver(conn, data)
                return
            # InlineSink.on_data, inlined: count, call, check max_request.
            runtime.requests += 1
            counters.request += 1
            try:
                on_receive(server, session, reactor_id, data)
            except Exception:
                runtime.failed("receive")
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()
            return
        try:
            packets = framer.feed(data)
        except FramingError as exc:
            host.framing_failed(conn, exc)
            return
        for packet in packets:
            if conn.closing:
                return
            if not inline:
                deliver(conn, packet)
                continue
            # InlineSink.on_data, inlined: count, call, check max_request.
            runtime.requests += 1
            counters.request += 1
            try:
                on_receive(server, session, reactor_id, packet)
            except Exception:
                runtime.failed("receive")
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()

    return on_event

