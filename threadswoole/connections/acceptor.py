"""Accepting connections: session ids, the shared record, max_conn, and the accept loop itself.

An Acceptor owns a range of session ids (see _state) and the listening sockets registered in
its reactor. Each wake-up accepts at most MAX_ACCEPTS connections so a connection storm
cannot starve established clients (asyncio's rule), and on EMFILE/ENFILE it stops watching
the listener for a moment instead of spinning on a readable socket it cannot accept from.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
from typing import Any, Callable, NamedTuple, Protocol

from threadswoole.state import shared as layout
from threadswoole.loop.reactor import EPOLLIN, Reactor

log = logging.getLogger("threadswoole")

MAX_ACCEPTS = 64
MAX_DATAGRAMS = 64
ACCEPT_RETRY_MS = 100
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LINGER_RESET = struct.pack("ii", 1, 0)



class ConnectionReceiver(Protocol):
    """Whoever takes over an accepted socket: a Host on the accepting thread, or an object that
    posts the hand-over to the owning thread's loop (a PROCESS reactor thread, a THREAD worker)."""

    def take_connection(self, sock: socket.socket, session: int, port: Any, remote: Any) -> Any: ...


class Placement(NamedTuple):
    """Where a new connection goes: the ids written into its shared record, and its receiver."""

    reactor_id: int
    worker_id: int
    receiver: ConnectionReceiver


Placer = Callable[[int, socket.socket, Any, Any], Placement]  # (session, sock, port, remote)


class Acceptor:
    """Issues session ids and publishes connection records; accepts from stream listeners."""

    def __init__(self, state: layout.SharedState, index: int, reactor: Reactor, counters: Any, *, max_connection: int, live_count: Callable[[], int], place: Placer, exclusive: bool = False) -> None:
        self.state = state
        self.index = index
        self.reactor = reactor
        self.counters = counters
        self.max_connection = max_connection
        self.live_count = live_count
        self.place = place
        self.exclusive = exclusive  # several processes share the listener: wake only one
        self._base = state.acceptor_base(index)
        self.pid = __import__("os").getpid()
        self._ports: list[Any] = []
        self.paused_ports: set[int] = set()

    # -- session ids ----------------------------------------------------------------------
    def allocate(self) -> int | None:
        """The next id whose slot is free (Swoole's session_round walk), or None when full."""
        state = self.state
        q = state.q
        acceptors = state.acceptors
        k = q[self._base + layout.A_ROUND]
        for _ in range(state.capacity // acceptors):
            session = k * acceptors + self.index + 1
            k += 1
            if q[state.record_base(session) + layout.C_SESSION] <= 0:
                q[self._base + layout.A_ROUND] = k
                return session
        q[self._base + layout.A_ROUND] = k
        return None

    def publish(self, session: int, sock: socket.socket, port: Any, remote: Any, reactor_id: int, worker_id: int) -> None:
        """Fill the record, then write SESSION last: readers see all of it or none of it."""
        state = self.state
        q, d = state.q, state.d
        base = state.record_base(session)
        now = self.reactor.clock
        q[base + layout.C_FD] = sock.fileno()
        q[base + layout.C_OWNER_PID] = self.pid
        q[base + layout.C_REACTOR] = reactor_id
        q[base + layout.C_WORKER] = worker_id
        q[base + layout.C_PORT_INDEX] = port.index
        q[base + layout.C_SERVER_FD] = port.sock
        q[base + layout.C_SERVER_PORT] = port.port
        q[base + layout.C_SOCKET_TYPE] = port.type
        family = port.family
        q[base + layout.C_FAMILY] = family
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(remote, tuple):
            high, low = layout.pack_ip(family, remote[0])
            q[base + layout.C_IP_HIGH] = high
            q[base + layout.C_IP_LOW] = low
            q[base + layout.C_REMOTE_PORT] = remote[1]
        else:
            q[base + layout.C_IP_HIGH] = q[base + layout.C_IP_LOW] = q[base + layout.C_REMOTE_PORT] = 0
        d[base + layout.C_CONNECT_TIME] = now
        d[base + layout.C_LAST_RECV] = now
        d[base + layout.C_LAST_SEND] = 0.0
        d[base + layout.C_LAST_DISPATCH] = 0.0
        for field in (layout.C_CLOSE_ERRNO, layout.C_UID, layout.C_RECV_QUEUED, layout.C_SEND_QUEUED, layout.C_FLAGS, layout.C_SEND_WRITTEN, layout.C_HTTP_DETACHED):
            q[base + field] = 0
        # websocket_status 1 (WEBSOCKET_STATUS_CONNECTION) on a WebSocket listener, else absent
        q[base + layout.C_WEBSOCKET_STATUS] = 1 if port.protocol.name == "websocket" else 0
        q[base + layout.C_SESSION] = session

    # -- listeners ------------------------------------------------------------------------
    def listen(self, ports: list[Any]) -> None:
        for port in ports:
            if port.is_stream:
                self._ports.append(port)
                self._watch(port)

    def _watch(self, port: Any) -> None:
        events = EPOLLIN | (select.EPOLLEXCLUSIVE if self.exclusive else 0)
        self.reactor.add(port.sock, events, lambda _mask, port=port: self.on_ready(port))

    def stop(self) -> None:
        """Stop accepting (worker stop or shutdown); the sockets stay open for others."""
        for port in self._ports:
            self.reactor.remove(port.sock)
        self._ports.clear()

    def _resume(self, port: Any) -> None:
        self.paused_ports.discard(port.sock)
        if port in self._ports:
            self._watch(port)

    def on_ready(self, port: Any) -> None:
        listening = port.listening_socket
        for _ in range(MAX_ACCEPTS):
            try:
                sock, remote = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    log.error("accept on %s:%s failed (%s); retrying in %d ms", port.host, port.port, exc, ACCEPT_RETRY_MS)
                    self.reactor.remove(port.sock)
                    self.paused_ports.add(port.sock)
                    self.reactor.after(ACCEPT_RETRY_MS, self._resume, port)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # the client gave up before we accepted it
                log.warning("accept on %s:%s failed: %s", port.host, port.port, exc)
                return
            live = self.live_count()  # before this one is counted
            self.counters.accept += 1
            if live >= self.max_connection:
                self.refuse(sock)
                continue
            session = self.allocate()
            if session is None:
                self.refuse(sock)
                continue
            try:
                placement = self.place(session, sock, port, remote)
            except Exception:
                log.exception("placing a new connection failed; closing it")
                self.refuse(sock)
                continue
            self.publish(session, sock, port, remote, placement.reactor_id, placement.worker_id)
            self.counters.publish_accepts()
            placement.receiver.take_connection(sock, session, port, remote)

    def refuse(self, sock: socket.socket) -> None:
        """Over max_conn: reset the connection and count it (stats abort_count)."""
        counters = self.counters
        counters.abort += 1
        counters.close += 1  # it was counted as accepted
        # Published before the socket closes: the refused client may ask another worker for
        # stats() the moment it sees the reset.
        counters.publish_accepts()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        sock.close()


class DatagramReader:
    """Reads one UDP or Unix-datagram listener and hands each packet to `deliver`."""

    def __init__(self, reactor: Reactor, port: Any, deliver: Callable[[Any, bytes, dict], Any], counters: Any, exclusive: bool = False) -> None:
        self.reactor = reactor
        self.port = port
        self.deliver = deliver
        self.counters = counters
        events = EPOLLIN | (select.EPOLLEXCLUSIVE if exclusive else 0)
        reactor.add(port.sock, events, self.on_ready)

    def on_ready(self, _mask: int) -> None:
        sock = self.port.listening_socket
        port = self.port
        counters = self.counters
        for _ in range(MAX_DATAGRAMS):
            try:
                data, address = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("recvfrom on %s failed: %s", port, exc)
                return
            counters.recv_bytes += len(data)
            if isinstance(address, tuple):
                info = {"address": address[0], "port": address[1], "server_socket": port.sock}
            else:
                info = {"address": address or "", "port": 0, "server_socket": port.sock}
            self.deliver(port, data, info)

    def stop(self) -> None:
        self.reactor.remove(self.port.sock)
