"""The server's shared state: one shared-memory segment of 8-byte words, laid out explicitly.

Regions (all fixed-size records of int64/float64 words, read through two memoryview casts of
the same bytes, `q` for ints and `d` for floats):

    header            HEADER_WORDS words
    stats slots       STAT_WORDS words per writer (master, each reactor, each worker, ...)
    worker table      WORKER_WORDS words per worker id (event, task and user workers)
    acceptor table    ACCEPTOR_WORDS words per acceptor (the session-id counters)
    connection table  CONN_WORDS words per slot

Single writer per word wherever possible (ARCHITECTURE invariant 5): every stats slot has
one writer and readers sum them; a connection record is written by its acceptor until it
is published and by the owning reactor afterwards. An aligned 8-byte store through a
memoryview is one machine store on x86-64 and aarch64, so a reader never sees half a word.

Session ids (the `fd` user code sees) are allocated by an acceptor: acceptor `a` of `A`
issues ids k*A + a + 1 for k = 0, 1, 2, ... and the id's slot is (id - 1) % capacity. The
capacity is a multiple of A, so acceptors never touch each other's slots; an id whose slot
is still in use is skipped (Swoole's session_round walk). Ids therefore grow forever, are
never reused, and map to their slot without a lookup. A record's SESSION word is written
last when a connection opens (publication) and negated when it closes (a tombstone that
`get_client_info(ignore_error=True)` can still read until the slot is reused).

Slices of `q` and `d` are made only through `read_words`/`read_floats`/`word_view`, which hold
a lock while the slice is created and released: every slice registers with the views' shared
export count, and free-threaded CPython 3.13 updates that count without synchronisation
(CPython gh-127716), so two threads slicing at once can lose an update. Then the segment
cannot be closed (BufferError at exit), or worse, every view of it reads as released.
Indexing (`q[i]`, `q[i] = v`) does not touch the count and needs no lock.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from threadswoole.state import shm
WORD = 8
HEADER_WORDS = 16
STAT_WORDS = 16
WORKER_WORDS = 16
ACCEPTOR_WORDS = 4
CONN_WORDS = 32

# header
H_MAGIC, H_MASTER_PID, H_MANAGER_PID, H_START_TIME, H_CAPACITY, H_ACCEPTORS, H_RELOADING, H_SHUTDOWN = range(8)
H_PIPE_MSG_ID = 8
MAGIC = 0x5457_4F4F_4C45  # "TWOOLE"

# stats slot counters (each slot has exactly one writer)
(
    S_ACCEPT,
    S_CLOSE,
    S_ABORT,
    S_DISPATCH,
    S_REQUEST,
    S_RESPONSE,
    S_RECV_BYTES,
    S_SEND_BYTES,
    S_CALLBACK_ERRORS,
    S_PROTOCOL_ERRORS,
    S_TASKING,
    S_TASK_DONE,
    S_HEARTBEAT_CLOSES,
    S_TASK_BYTES,
    S_TASK_TAKEN,
    S_TASK_TAKEN_BYTES,
) = range(16)
STAT_NAMES = {
    S_ACCEPT: "accept_count",
    S_CLOSE: "close_count",
    S_ABORT: "abort_count",
    S_DISPATCH: "dispatch_count",
    S_REQUEST: "request_count",
    S_RESPONSE: "response_count",
    S_RECV_BYTES: "total_recv_bytes",
    S_SEND_BYTES: "total_send_bytes",
    S_CALLBACK_ERRORS: "callback_error_count",
    S_PROTOCOL_ERRORS: "protocol_error_count",
    S_TASKING: "task_dispatch_count",
    S_TASK_DONE: "task_done_count",
    S_HEARTBEAT_CLOSES: "heartbeat_close_count",
    # tasks: dispatched (S_TASKING, S_TASK_BYTES) by the senders, taken (read) and done by the
    # task workers; tasks sent by the master or the manager are not counted on either side
    S_TASK_BYTES: "task_dispatch_bytes",
    S_TASK_TAKEN: "task_taken_count",
    S_TASK_TAKEN_BYTES: "task_taken_bytes",
}

# worker table
W_STATUS, W_PID, W_TID, W_GENERATION, W_START_TIME, W_ROLE, W_REQUESTS = range(7)
# PROCESS redelivery (see _redelivery.py): the event a worker is handling (written by the
# worker), and how its previous instance ended (written by the manager before a respawn)
W_CURRENT, W_DEATH = 7, 8
DEATH_PLANNED, DEATH_STUCK, DEATH_CRASHED = 0, 1, 2

# acceptor table
A_ROUND, A_ACCEPTED = range(2)

# connection record
(
    C_SESSION,
    C_FD,
    C_REACTOR,
    C_WORKER,
    C_PORT_INDEX,
    C_SERVER_FD,
    C_SERVER_PORT,
    C_SOCKET_TYPE,
    C_FAMILY,
    C_REMOTE_PORT,
    C_IP_HIGH,
    C_IP_LOW,
    C_CONNECT_TIME,
    C_LAST_RECV,
    C_LAST_SEND,
    C_LAST_DISPATCH,
    C_CLOSE_ERRNO,
    C_UID,
    C_RECV_QUEUED,
    C_SEND_QUEUED,
    C_WEBSOCKET_STATUS,
    C_FLAGS,
    C_OWNER_PID,  # the process holding the socket (BASE: lets the manager retire a dead worker's records)
    C_SEND_WRITTEN,  # PROCESS: bytes of the workers' sends the reactor has written (see Host.write)
    C_HTTP_DETACHED,  # HTTP: the detached request's facts for Response.create (http/session.py)
) = range(25)
# The hot paths (a raw stream's reads, Server.send's fast path) stamp C_LAST_RECV / C_LAST_SEND
# at most once per STAMP_RESOLUTION seconds per connection: the first read (send) after the
# window passed writes its loop-turn time, the others in the window write nothing (a float
# store into shared memory is about 330 instructions, per request twice under load). A stamp
# is so at most this much older than the activity; heartbeat allows for it.
STAMP_RESOLUTION = 0.1
FLAG_PROTECTED = 1
FLAG_PAUSED = 2
FLAG_DELAYED = 4
FLAG_CLOSING = 8
FLAG_CLOSED_BY_SERVER = 16
FLAG_OVERFLOW = 32
# The session's owner is a BASE worker draining for a reload_async or stop(-1, True): it no
# longer reads its mailbox (its replacement does), so another worker's operation on the
# session cannot reach it and fails at the call (SessionForwarder) instead of being lost.
FLAG_OWNER_LEAVING = 64

# session states
LIVE, CLOSING, CLOSED, NEVER = 1, 2, -1, 0


def pack_ip(family: int, host: str) -> tuple[int, int]:
    """An IPv4/IPv6 address as two words (high, low) of its 16-byte form."""
    if family == socket.AF_INET:
        raw = socket.inet_pton(socket.AF_INET, host).rjust(16, b"\0")
    elif family == socket.AF_INET6:
        raw = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    else:
        return 0, 0
    value = int.from_bytes(raw, "big")
    high, low = value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF
    # words are signed int64
    return high - (1 << 64) if high >= 1 << 63 else high, low - (1 << 64) if low >= 1 << 63 else low


def unpack_ip(family: int, high: int, low: int) -> str:
    value = ((high & 0xFFFF_FFFF_FFFF_FFFF) << 64) | (low & 0xFFFF_FFFF_FFFF_FFFF)
    raw = value.to_bytes(16, "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return ""


class SharedState:
    """The segment and its word views; created by the master before any fork or thread."""

    def __init__(self, *, stat_slots: int, worker_slots: int, acceptors: int, capacity: int) -> None:
        if capacity % acceptors:
            capacity += acceptors - capacity % acceptors
        self.stat_slots = stat_slots
        self.worker_slots = worker_slots
        self.acceptors = acceptors
        self.capacity = capacity
        self.stats_base = HEADER_WORDS
        self.workers_base = self.stats_base + stat_slots * STAT_WORDS
        self.acceptors_base = self.workers_base + worker_slots * WORKER_WORDS
        self.conns_base = self.acceptors_base + acceptors * ACCEPTOR_WORDS
        words = self.conns_base + capacity * CONN_WORDS
        self.segment = shm.create("state", words * WORD)
        self.q = self.segment.buf.cast("q")
        self.d = self.segment.buf.cast("d")
        self.q[H_MAGIC] = MAGIC
        self.d[H_START_TIME] = time.time()
        self.q[H_CAPACITY] = capacity
        self.q[H_ACCEPTORS] = acceptors
        self._owner_pid = __import__("os").getpid()
        self._slicing = threading.Lock()  # see the module docstring: slices are made under it

    @property
    def name(self) -> str:
        return self.segment.name

    def read_words(self, start: int, stop: int, step: int = 1) -> list[int]:
        """The int64 words q[start:stop:step] as a list (a slice made and released under the lock)."""
        with self._slicing:
            view = self.q[start:stop:step]
            try:
                return view.tolist()
            finally:
                view.release()

    def read_floats(self, start: int, stop: int) -> list[float]:
        """The float64 words d[start:stop] as a list (a slice made and released under the lock)."""
        with self._slicing:
            view = self.d[start:stop]
            try:
                return view.tolist()
            finally:
                view.release()

    def word_view(self, start: int, stop: int) -> memoryview:
        """A lasting view of q[start:stop] for one writer; give it back with `release_view`."""
        with self._slicing:
            return self.q[start:stop]

    def release_view(self, view: memoryview) -> None:
        with self._slicing:
            view.release()

    def destroy(self) -> bool:
        """Release the views and unlink the segment (master, once, at shutdown); False if a
        view outlived it (see `shm.destroy`)."""
        for view in (self.q, self.d):
            view.release()
        return shm.destroy(self.segment)

    # -- stats ----------------------------------------------------------------------------
    def stat_base(self, slot: int) -> int:
        if not 0 <= slot < self.stat_slots:
            raise IndexError(f"stats slot {slot} out of range")
        return self.stats_base + slot * STAT_WORDS

    def stat_total(self, counter: int) -> int:
        q = self.q
        return sum(q[self.stats_base + slot * STAT_WORDS + counter] for slot in range(self.stat_slots))

    def stat_totals(self) -> dict[str, int]:
        q = self.q
        totals = dict.fromkeys(STAT_NAMES.values(), 0)
        for slot in range(self.stat_slots):
            base = self.stats_base + slot * STAT_WORDS
            for counter, name in STAT_NAMES.items():
                totals[name] += q[base + counter]
        return totals

    # -- workers --------------------------------------------------------------------------
    def worker_base(self, worker_id: int) -> int:
        return self.workers_base + worker_id * WORKER_WORDS

    def begin_generation(self, worker_id: int) -> int:
        """A new instance of `worker_id` starts: its generation number (1, 2, ...)."""
        generation = self.worker_field(worker_id, W_GENERATION) + 1
        self.set_worker_field(worker_id, W_GENERATION, generation)
        return generation

    def worker_field(self, worker_id: int, field: int) -> int:
        return self.q[self.workers_base + worker_id * WORKER_WORDS + field]

    def set_worker_field(self, worker_id: int, field: int, value: int) -> None:
        self.q[self.workers_base + worker_id * WORKER_WORDS + field] = value

    # -- sessions and connections ---------------------------------------------------------
    def acceptor_base(self, acceptor: int) -> int:
        return self.acceptors_base + acceptor * ACCEPTOR_WORDS

    def record_base(self, session_id: int) -> int:
        return self.conns_base + ((session_id - 1) % self.capacity) * CONN_WORDS

    def issued(self, session_id: int) -> bool:
        """Has this id ever been handed out? (distinguishes 'closed' 1004 from 'never existed' 1005)."""
        acceptor = (session_id - 1) % self.acceptors
        k = (session_id - 1) // self.acceptors
        return k < self.q[self.acceptors_base + acceptor * ACCEPTOR_WORDS + A_ROUND]

    def session_state(self, session_id: int) -> int:
        """LIVE, CLOSING (close started, record still readable), CLOSED or NEVER issued."""
        base = self.record_base(session_id)
        if self.q[base + C_SESSION] == session_id:
            return CLOSING if self.q[base + C_FLAGS] & FLAG_CLOSING else LIVE
        return CLOSED if self.issued(session_id) else NEVER

    def alive(self, session_id: int) -> bool:
        """The session exists and no close has started (contract exist())."""
        base = self.record_base(session_id)
        return self.q[base + C_SESSION] == session_id and not self.q[base + C_FLAGS] & FLAG_CLOSING

    def owner(self, session_id: int) -> tuple[int, int] | None:
        """(reactor id, worker id) of a live session, or None."""
        q = self.q
        base = self.record_base(session_id)
        reactor, worker = q[base + C_REACTOR], q[base + C_WORKER]
        return (reactor, worker) if q[base + C_SESSION] == session_id else None

    def client_info(self, session_id: int, ignore_error: bool) -> dict[str, Any] | None:
        """The §5.5 dict read from the record, verified against concurrent reuse, or None."""
        q = self.q
        base = self.record_base(session_id)
        for _attempt in range(3):
            word = q[base + C_SESSION]
            if word != session_id and not (ignore_error and word == -session_id):
                return None
            values = self.read_words(base, base + CONN_WORDS)
            floats = self.read_floats(base, base + CONN_WORDS)
            if q[base + C_SESSION] != word:
                continue  # the record changed while we read it; read again
            family = values[C_FAMILY]
            info: dict[str, Any] = {
                "server_port": values[C_SERVER_PORT],
                "server_fd": values[C_SERVER_FD],
                "socket_fd": values[C_FD],
                "socket_type": values[C_SOCKET_TYPE],
                "remote_port": values[C_REMOTE_PORT],
                "remote_ip": unpack_ip(family, values[C_IP_HIGH], values[C_IP_LOW]),
                "reactor_id": values[C_REACTOR],
                "worker_id": values[C_WORKER],
                "connect_time": int(floats[C_CONNECT_TIME]),
                "last_time": int(floats[C_LAST_RECV]),
                "last_recv_time": floats[C_LAST_RECV],
                "last_send_time": floats[C_LAST_SEND],
                "last_dispatch_time": floats[C_LAST_DISPATCH],
                "close_errno": values[C_CLOSE_ERRNO],
                "recv_queued_bytes": values[C_RECV_QUEUED],
                "send_queued_bytes": values[C_SEND_QUEUED],
            }
            if values[C_UID]:
                info["uid"] = values[C_UID] & 0xFFFF_FFFF
            if values[C_WEBSOCKET_STATUS]:  # a WebSocket listener's connection: 1..4
                info["websocket_status"] = values[C_WEBSOCKET_STATUS] & 0xFF
            return info
        return None

    def live_sessions(self, acceptor: int | None = None) -> list[int]:
        """Every live session id, ascending (optionally only one acceptor's)."""
        words = self.read_words(self.conns_base + C_SESSION, len(self.q), CONN_WORDS)
        live = [word for word in words if word > 0]
        if acceptor is not None:
            live = [s for s in live if (s - 1) % self.acceptors == acceptor]
        live.sort()
        return live
