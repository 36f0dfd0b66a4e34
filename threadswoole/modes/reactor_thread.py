"""SWOOLE_PROCESS reactor threads: own the connections in the master, feed the workers over pipes.

Each reactor thread runs a Reactor and a Host like every other mode; its sink (PipeSink)
turns connection events into messages for the worker that `dispatch_mode` picks, batched
per loop iteration (one datagram per worker per wake-up). Workers answer through the
thread's own mailbox: sends, closes and the other connection operations arrive as messages
and are applied here, by the only thread that touches those sockets.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from typing import Any

from threadswoole import _context
from threadswoole.connections import heartbeat
from threadswoole.connections.acceptor import DatagramReader
from threadswoole.connections.connection import Connection
from threadswoole.connections.host import Host
from threadswoole.connections.operations import apply_operation
from threadswoole.errors import ErrorCode
from threadswoole.ipc import messages
from threadswoole.ipc.mailbox import BACKLOG_LIMIT, MailboxLink
from threadswoole.ipc.redelivery import Sender
from threadswoole.loop.reactor import EPOLLIN, Reactor
from threadswoole.state import shared as layout
from threadswoole.state.counters import StatCounters
from threadswoole.workers.dispatch import EVENT_CLOSE, EVENT_CONNECT, EVENT_DATA, Dispatcher, ip_key

log = logging.getLogger("threadswoole")
# A connection's protocol events sent to a worker and not finished there, past which the next
# wait (a pipelining client is slowed by TCP instead of queueing answers without bound).
MAX_EVENTS_IN_FLIGHT = 64
# Event bytes sent to one worker and not acknowledged (finished) yet, past which the reactor
# thread stops reading that worker's clients, and the mark under which it reads them again.
UNACKED_LIMIT = 2 * BACKLOG_LIMIT
UNACKED_RESUME = BACKLOG_LIMIT
T_SEND = messages.T_SEND
T_EVENT_BASE = messages.T_EVENT_BASE
HEADER_UNPACK_FROM, HEADER_SIZE = messages.HEADER.unpack_from, messages.HEADER_SIZE
MAX_DATAGRAMS_PER_WAKEUP = messages.MAX_DATAGRAMS_PER_WAKEUP


class PipeSink:
    """Connection events of one reactor thread, dispatched to worker processes."""

    def __init__(self, owner: "ReactorThread") -> None:
        self.owner = owner
        self.dispatcher = owner.dispatcher
        self.link = owner.link
        self.reactor_id = owner.reactor_id
        self.counters = owner.counters
        self.state = owner.state
        self.throttled: dict[int, set[Connection]] = {}
        self.waiting: dict[int, set[Connection]] = {}  # worker -> connections held for it (_backlogged)
        self.link.on_drained = self.resume_throttled
        self.worker_num = owner.config.roster.event_num
        self.sender = Sender(self.link, self.reactor_id, self.worker_num)  # numbered, kept until acknowledged
        self.link.before_flush = self.sender.seal  # each loop turn's events leave in one piece per worker
        self.by_session = self.dispatcher.by_session
        self.inline_runtime = None  # not inline: every event crosses to a worker process
        self.server = None

    def _worker(self, conn: Connection, event: int, data: bytes = b"") -> int:
        remote = conn.remote[0] if isinstance(conn.remote, tuple) else ""
        return self.dispatcher.worker_for(conn.session_id, remote, conn.uid, event, data)

    def _put(self, worker: int, type_: int, conn: Connection, payload: bytes = b"", flags: int = 0) -> None:
        self.sender.send(worker, type_, conn.session_id, payload, conn.listener.index, flags)

    def holds_record(self, conn: Connection) -> bool:
        return self.dispatcher.deliver_connect_close

    def on_open(self, conn: Connection) -> None:
        if not self.dispatcher.deliver_connect_close:
            return
        worker = self._worker(conn, EVENT_CONNECT)
        conn.worker_id = worker
        self.state.q[conn.record + layout.C_WORKER] = worker
        # The TLS client certificate travels with `connect`: only that worker may show it (§5.5).
        self._put(worker, messages.T_CONNECT, conn, conn.client_cert.encode() if conn.client_cert else b"")

    def on_data(self, conn: Connection, data: bytes) -> None:
        # the hot path of PROCESS mode: the default dispatch (by session) without calls
        session = conn.session_id
        worker = session % self.worker_num if self.by_session else self._worker(conn, EVENT_DATA, data)
        sender = self.sender
        sender.send(worker, messages.T_DATA, session, data, conn.listener.index)
        self.counters.dispatch += 1
        if sender.boxes[worker].pending_bytes > BACKLOG_LIMIT or sender.unacked_bytes[worker] > UNACKED_LIMIT:
            self._throttle(conn, worker)

    def on_event(self, conn: Connection, event: Any) -> None:
        """A parsed protocol event crosses to the worker as its packed form, under its own
        message type: the worker rebuilds it without parsing anything again."""
        held = conn.held_events
        if held is not None:
            held.append(event)  # backlogged (see _backlogged): sent when the worker caught up
            return
        session = conn.session_id
        sender = self.sender
        worker = session % self.worker_num if self.by_session else self._event_worker(conn, event.continues_message)
        seq = conn.event_seq = sender.send(worker, T_EVENT_BASE + event.wire_id, session, event.pack(), conn.listener.index)
        conn.event_worker = worker
        unacked = conn.unacked = conn.unacked + 1
        if unacked == 1:
            conn.window_seq = seq
        elif unacked >= MAX_EVENTS_IN_FLIGHT or conn.out:
            self._backlogged(conn, worker)
        self.counters.dispatch += 1
        if sender.boxes[worker].pending_bytes > BACKLOG_LIMIT or sender.unacked_bytes[worker] > UNACKED_LIMIT:
            self._throttle(conn, worker)

    def _backlogged(self, conn: Connection, worker: int) -> None:
        # A client that pipelines: its events went out faster than answers came back. While
        # the worker keeps up (the first of the counted events is finished) and the answers
        # are read, a new count starts; otherwise its next events wait (Host.hold_events).
        host = self.owner.host
        if conn.out_bytes <= host.backlog_limit and (conn.unacked < MAX_EVENTS_IN_FLIGHT or not self.sender.in_flight(worker, conn.window_seq)):
            if conn.unacked >= MAX_EVENTS_IN_FLIGHT:
                conn.unacked = 0
            return
        host.hold_events(conn)
        self.waiting.setdefault(worker, set()).add(conn)

    def acknowledged(self, worker: int) -> None:
        """Events of `worker` finished: release the held connections whose events all did."""
        waiting = self.waiting.get(worker)
        for conn in list(waiting or ()):
            if conn.closing:
                waiting.discard(conn)
            elif conn.out_bytes <= self.owner.host.backlog_low and not self.sender.in_flight(worker, conn.event_seq):
                waiting.discard(conn)
                conn.unacked = 0
                self.owner.host.release_events(conn)
        if not waiting:
            self.waiting.pop(worker, None)

    def on_drained(self, conn: Connection) -> None:
        """Its answers were read (Host): release it if its worker finished its events too."""
        if not self.sender.in_flight(conn.event_worker, conn.event_seq):
            self.waiting.get(conn.event_worker, set()).discard(conn)
            conn.unacked = 0
            host = self.owner.host
            host.reactor.defer(lambda: host.release_events(conn))

    def _event_worker(self, conn: Connection, continues_message: bool) -> int:
        # Spread over workers (dispatch_mode 1/3), a connection's events still keep their
        # order: the rest of a message, or an event behind one its worker has not finished
        # (pipelined HTTP requests are answered in order), goes to that same worker.
        worker = conn.event_worker
        if worker < 0 or not (continues_message or self.sender.in_flight(worker, conn.event_seq)):
            worker = conn.event_worker = self._worker(conn, EVENT_DATA)
        return worker

    def on_protocol_failure(self, conn: Connection, response: bytes) -> None:
        """The protocol's error answer, to the worker of the connection's last events (see
        Host.protocol_failed): it goes out behind their answers."""
        worker = conn.session_id % self.worker_num if self.by_session else self._event_worker(conn, True)
        self._put(worker, messages.T_PROTOCOL_FAILURE, conn, response)

    def _throttle(self, conn: Connection, worker: int) -> None:
        # Back-pressure: that worker is behind (its pipe is full, or the events it has not
        # acknowledged are over UNACKED_LIMIT: they are kept here until it does), so stop
        # reading this client until it catches up, instead of queueing without bound in the master.
        conn.throttled = True
        self.owner.host.want_write(conn)
        self.throttled.setdefault(worker, set()).add(conn)

    def resume_throttled(self, worker: int) -> None:
        """The worker's pipe drained or its acknowledgements came: read its clients again once
        both the pipe and its unacknowledged events are back under their marks."""
        if 0 <= worker < self.worker_num:
            sender = self.sender
            box = sender.boxes[worker]
            if sender.unacked_bytes[worker] > UNACKED_RESUME or box.pending_bytes > BACKLOG_LIMIT:
                return
        for conn in self.throttled.pop(worker, ()):
            if not conn.closed:
                conn.throttled = False
                self.owner.host.want_write(conn)

    def on_closed(self, conn: Connection) -> None:
        if conn.held_events is not None:
            self.waiting.get(conn.event_worker, set()).discard(conn)
        if self.dispatcher.deliver_connect_close:
            self._put(self._worker(conn, EVENT_CLOSE), messages.T_CLOSE, conn)

    def on_buffer_full(self, conn: Connection) -> None:
        self._put(self._worker(conn, EVENT_DATA), messages.T_BUFFER_FULL, conn)

    def on_buffer_empty(self, conn: Connection) -> None:
        self._put(self._worker(conn, EVENT_DATA), messages.T_BUFFER_EMPTY, conn)


class ReactorThread:
    """One reactor thread of the master: its loop, connections, dispatcher and mailboxes."""

    def __init__(self, driver: Any, reactor_id: int) -> None:
        config = driver.config
        self.driver = driver
        self.config = config
        self.server = config.server
        self.state = driver.state
        self.reactor_id = reactor_id
        self.reactor = Reactor(f"reactor-{reactor_id}")
        self.counters = StatCounters(self.state, config.roster.reactor_stat_slot(reactor_id))
        self.reactor.periodic.append(self.counters.flush)
        self.reactor.before_poll.append(self.counters.publish_traffic)  # before the link's flush
        self.link = MailboxLink(self.reactor, messages.reactor_mailbox(reactor_id), driver.posts)
        self.dispatcher = Dispatcher(self.server, config.settings, self.state, config.roster.event_num)
        self.sink = PipeSink(self)
        # Sessions of other reactor threads are never operated on from here: no forwarding.
        self.host = Host(settings=config.settings, state=self.state, reactor=self.reactor, reactor_id=reactor_id, counters=self.counters, sink=self.sink, forwarder=_NoForwarding(), publish_written=True)
        # The workers' answers and acknowledgements are read as they come (up to
        # MAX_DATAGRAMS_PER_WAKEUP): one datagram per wake-up let acknowledgements queue behind
        # a reactor busy reading clients, and the unacknowledged events kept here grew without
        # bound (stress faults stalled_reader: 650 MiB).
        self.inbox = messages.Inbox(driver.inboxes[messages.reactor_mailbox(reactor_id)], self.on_message)
        self.reactor.add(self.inbox.fd, EPOLLIN, self.on_inbox)
        self.readers = [DatagramReader(self.reactor, port, self.on_packet, self.counters) for port in driver.datagram_ports(reactor_id)]
        self.thread = threading.Thread(target=self._run, name=f"reactor-{reactor_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        ctx = _context.current()
        ctx.server = self.server
        ctx.role = _context.ROLE_REACTOR
        ctx.loop = self.reactor
        interval = self.config.settings.get("heartbeat_check_interval")
        if interval:
            heartbeat.start(self.host, interval, self.driver.default_idle_time())
        try:
            self.reactor.run()
        except BaseException:
            log.exception("reactor thread %d died", self.reactor_id)
            raise

    # -- from the accept loop ---------------------------------------------------------------
    def take_connection(self, sock: Any, session: int, port: Any, remote: Any) -> None:
        """The master's accept loop hands a socket over: adopted on this thread's loop."""
        self.reactor.post(self.host.adopt, sock, session, port, remote)

    # -- datagrams --------------------------------------------------------------------------
    def on_packet(self, port: Any, data: bytes, client_info: dict) -> None:
        dispatcher = self.dispatcher
        if dispatcher.func is not None or dispatcher.stateless:
            worker = dispatcher.worker_for(0, client_info["address"], 0, EVENT_DATA, data)
        else:  # one peer address always reaches the same worker
            worker = (ip_key(client_info["address"]) + client_info["port"]) % self.sink.worker_num
        self.sink.sender.send(worker, messages.T_PACKET, 0, pickle.dumps((data, client_info)), port.index)
        self.counters.dispatch += 1

    # -- from the workers -------------------------------------------------------------------
    def on_inbox(self, _mask: int = 0) -> None:
        """Read the workers' datagrams (up to MAX_DATAGRAMS_PER_WAKEUP): an answer (a whole
        T_SEND) is written to its connection right in this loop, anything else goes through
        the Inbox's parser and `on_message` (a frame less per answer than Inbox.on_readable)."""
        inbox = self.inbox
        host = self.host
        conns, write = host.conns, host.write
        unpack = HEADER_UNPACK_FROM
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            datagram = inbox.receive()
            if datagram is None:
                return
            size = len(datagram)
            offset = 0
            while offset + HEADER_SIZE <= size:
                type_, flags, _port, _reactor, _src, session, _msg_id, length = unpack(datagram, offset)
                start = offset + HEADER_SIZE
                end = start + length
                if type_ == T_SEND and not flags:  # (on_message's first case)
                    conn = conns.get(session)
                    if conn is not None and not conn.closing:
                        write(conn, datagram[start:end])  # admitted by the worker (see apply_operation)
                else:
                    inbox.parse(datagram[offset:end])  # the general path, this message alone
                offset = end

    def on_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        host = self.host
        if type_ == T_SEND:  # a response: apply_operation's SEND, without its frame
            conn = host.conns.get(session)
            if conn is not None and not conn.closing:
                host.write(conn, payload)  # admitted by the worker (see apply_operation)
            return
        if type_ == messages.T_ACK:
            sink = self.sink
            sink.sender.acknowledged(src, session)
            if sink.waiting:
                sink.acknowledged(src)
            if sink.throttled:
                sink.resume_throttled(src)
            return
        if type_ == messages.T_HELLO:
            self.sink.sender.replay(src, payload)
            return
        if type_ == messages.T_CLOSE_DONE:
            host.release_record(session)
            return
        conn = host.conns.get(session)
        if conn is None:
            return  # closed meanwhile: Swoole's "session does not exist", nothing to do
        apply_operation(host, conn, type_, payload, src)

    # -- shutdown ---------------------------------------------------------------------------
    def close_everything(self, done: threading.Event, deadline: float) -> None:
        """On this thread: stop reading datagrams, close every connection (the workers get their
        close events), push the messages out, then signal `done`. A busy worker is waited for
        until the monotonic `deadline` (the shutdown's max_wait_time) with the loop running, so
        its replies are read meanwhile (a worker waiting for room in our mailbox is never kept
        waiting by us); what it has not taken by then is dropped with a warning."""
        try:
            for reader in self.readers:
                reader.stop()
            self.host.close_all()
            self.link.flush()
            while self.link.has_pending and time.monotonic() < deadline:
                self.reactor.run_once(min(0.05, max(0.0, deadline - time.monotonic())))
            self.link.flush_until(deadline, f"reactor thread {self.reactor_id} (shutting down)")
        finally:
            done.set()

    def stop(self, timeout: float) -> None:
        self.reactor.stop()
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.counters.flush()
            self.counters.release()
            self.reactor.close()


class _NoForwarding:
    """A PROCESS reactor thread only touches its own sessions; nothing is ever forwarded."""

    def forward(self, op: int, session: int, payload: bytes) -> bool:
        return _context.set_error(ErrorCode.SESSION_NOT_EXIST)
