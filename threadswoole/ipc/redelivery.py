"""PROCESS mode: no event is lost when a worker dies (kill -9 included).

A reactor thread numbers every event it sends to a worker (connect, data, close, packet,
buffer events) and keeps it until that worker acknowledges it. A worker acknowledges what
it finished in the same datagram that carries its replies, so a request is either answered
and acknowledged or neither. When a worker (re)starts it says hello to every reactor thread;
each answers with the events that are still unacknowledged, in order. The new worker
handles those first and then its mailbox, dropping what it has already handled (the same
events, still queued). Events a dead worker had read but not finished are therefore handled
again by its replacement: a client never misses an answer, and a callback runs twice only
if its worker was killed in the middle of it.

One event is a suspect: the one the dead worker was handling (it records it in its worker
slot). If the manager killed that worker for being stuck past max_wait_time, the suspect is
not redelivered (it would hang the replacement too). If the worker crashed, the suspect is
redelivered once, and dropped if it kills a second worker. An event whose callback raised
SystemExit (PHP's exit()) counts as handled.

Sequence numbers travel in the 32-bit msg_id of the message header and are compared with
serial-number arithmetic (RFC 1982), so they may wrap on a long-running server.
"""

from __future__ import annotations

import collections
from itertools import repeat
import logging
import pickle
import struct
from typing import Any, Callable

from threadswoole.ipc import messages
from threadswoole.state import shared as layout
log = logging.getLogger("threadswoole")
MASK = 0xFFFF_FFFF
HALF = 1 << 31
REPLAY_WAIT_MS = 2000  # a reactor that does not answer a hello within this is not waited for


def after(seq: int, last: int) -> bool:
    """Serial-number comparison: is `seq` later than `last` (both 32-bit)?"""
    return 0 < ((seq - last) & MASK) < HALF


HEADER_PACK, HEADER_UNPACK_FROM, HEADER_SIZE = messages.HEADER.pack, messages.HEADER.unpack_from, messages.HEADER_SIZE
CHUNK_SIZE, BATCH_LIMIT = messages.CHUNK_SIZE, messages.BATCH_LIMIT
HELLO = struct.Struct(">BI")  # how the predecessor ended, the seq of its suspect event (0: none)


class Sender:
    """Reactor side: numbered events per worker, kept until acknowledged (hot path: lists
    indexed by worker id and cached outboxes, no dict or method lookups per event)."""

    def __init__(self, link: Any, reactor_id: int, worker_num: int) -> None:
        self.link = link
        self.reactor_id = reactor_id
        self.next_seq = [0] * worker_num
        self.pending: list[collections.deque] = [collections.deque() for _ in range(worker_num)]
        self.boxes: list[Any] = [None] * worker_num
        # payload bytes sent to each worker and not acknowledged yet: kept here until then, so
        # the reactor thread stops reading the clients of a worker over UNACKED_LIMIT
        self.unacked_bytes = [0] * worker_num
        self.redelivered: set[tuple[int, int]] = set()  # (worker, seq) suspects given a second chance

    def send(self, worker: int, type_: int, session: int, payload: bytes, port: int, flags: int = 0) -> int:
        """Number the event, keep it, queue it for `worker`; returns its sequence number."""
        seq = self.next_seq[worker] + 1
        if seq > MASK:
            seq = 1
        self.next_seq[worker] = seq
        self.pending[worker].append((seq, type_, session, payload, port, flags))
        box = self.boxes[worker]
        if box is None:
            box = self.boxes[worker] = self.link.outbox(worker)
        size = len(payload)
        self.unacked_bytes[worker] += size
        batch = box.batch
        if size <= CHUNK_SIZE and len(batch) + HEADER_SIZE + size <= BATCH_LIMIT:
            # Outbox.put's common case, without its frame and its keyword arguments (every
            # event of every request passes here: see Outbox.put for the rest)
            batch += HEADER_PACK(type_, flags, port, self.reactor_id, box.src, session, seq, size)
            batch += payload
        else:
            box.put(type_, session, payload, port=port, reactor=self.reactor_id, flags=flags, msg_id=seq)
        return seq

    def in_flight(self, worker: int, seq: int) -> bool:
        """True while event `seq` sent to `worker` is not acknowledged (not finished there)."""
        pending = self.pending[worker]
        return bool(pending) and not 0 < ((pending[0][0] - seq) & MASK) < HALF

    def acknowledged(self, worker: int, seq: int) -> None:
        pending = self.pending[worker]
        popleft = pending.popleft
        if pending and not self.redelivered:
            # Events are numbered one by one, so the acknowledged ones are the first `count`
            # entries when the seq found there proves it (a replay may leave gaps): popped
            # without the comparison per entry.
            count = ((seq - pending[0][0]) & MASK) + 1
            if count <= len(pending) and pending[count - 1][0] == seq:
                released = 0
                for _ in repeat(None, count):
                    released += len(popleft()[3])
                self.unacked_bytes[worker] -= released
                return
        # pop every entry not later than seq (serial arithmetic, inlined)
        while pending and not 0 < ((pending[0][0] - seq) & MASK) < HALF:
            entry = popleft()
            self.unacked_bytes[worker] -= len(entry[3])
            if self.redelivered:
                self.redelivered.discard((worker, entry[0]))

    def replay(self, worker: int, hello: bytes) -> None:
        """A worker (re)started: send it everything it has not acknowledged, in order, less
        the suspect event of a predecessor that was killed as stuck or crashed twice on it."""
        death, suspect = HELLO.unpack(hello) if len(hello) == HELLO.size else (layout.DEATH_PLANNED, 0)
        pending = self.pending[worker]
        entries = []
        for entry in pending:
            if suspect and entry[0] == suspect and death != layout.DEATH_PLANNED:
                if death == layout.DEATH_STUCK or (worker, suspect) in self.redelivered:
                    log.warning("reactor %d: not redelivering event %d (session %d): worker %d died handling it%s", self.reactor_id, suspect, entry[2], worker, " (stuck)" if death == layout.DEATH_STUCK else " twice")
                    continue
                self.redelivered.add((worker, suspect))
            entries.append(entry)
        if len(entries) != len(pending):
            self.pending[worker] = collections.deque(entries)
            self.unacked_bytes[worker] = sum(len(entry[3]) for entry in entries)
        self.link.outbox(worker).put(messages.T_REPLAY, 0, pickle.dumps(entries), reactor=self.reactor_id)
        if entries and death != layout.DEATH_PLANNED:
            log.info("reactor %d: redelivering %d unacknowledged events to worker %d", self.reactor_id, len(entries), worker)


Deliver = Callable[[int, int, int, int, int, bytes], Any]  # type, flags, port, reactor, session, payload
Other = Callable[[int, int, int, int, int, bytes, int], Any]  # the same and the source mailbox
LAST_REACTOR_MAILBOX = messages.reactor_mailbox(0)
T_REPLAY = messages.T_REPLAY


class Receiver:
    """Worker side: hold each reactor's events until its replay arrived, drop duplicates,
    remember the last finished event of each reactor and acknowledge it."""

    def __init__(self, reactors: list[int], link: Any, reactor: Any, deliver: Deliver, state: layout.SharedState, worker_id: int,
                 *, inbox: Any, other: Other) -> None:
        """`inbox` is the worker's mailbox socket: the receiver reads it (its `inbox` attribute,
        one message per wake-up) and hands what does not come from a reactor thread to `other`."""
        self.link = link
        self.deliver = deliver
        self.other = other
        self.inbox = messages.Inbox(inbox, self.on_message, one_per_wakeup=True)
        self.done: dict[int, int] = {}  # reactor mailbox -> last finished seq
        self.acked: dict[int, int] = {}
        self.boxes: dict[int, Any] = {}  # reactor mailbox -> its outbox (put_acks, per iteration)
        self.waiting: dict[int, list] | None = {mailbox: [] for mailbox in reactors}
        self.q = state.q
        self.current_word = state.worker_base(worker_id) + layout.W_CURRENT
        # what our predecessor was handling when it ended, and how it ended
        current = self.q[self.current_word]
        death = state.worker_field(worker_id, layout.W_DEATH)
        self.q[self.current_word] = 0
        state.set_worker_field(worker_id, layout.W_DEATH, layout.DEATH_PLANNED)
        suspect_src, suspect_seq = -(current >> 32), current & MASK
        link.before_flush = self.put_acks
        for mailbox in reactors:
            hello = HELLO.pack(death, suspect_seq if current and mailbox == suspect_src else 0)
            link.outbox(mailbox).put(messages.T_HELLO, 0, hello)
        link.flush_now(1.0)
        reactor.after(REPLAY_WAIT_MS, self._stop_waiting)

    def on_readable(self) -> None:
        """Read one datagram from the mailbox (and the rest of a chunked message) and handle it.

        The hot path: a whole (unchunked) message from a reactor thread whose replay already
        came is checked for a duplicate and delivered right here, in this loop; anything else
        (chunks, other sources, events held until a replay) goes through the Inbox's parser
        and `on_message`, one message at a time. Two frames less per event than
        Inbox.parse -> on_message (stress/callgrind/process_http.sh)."""
        inbox = self.inbox
        while True:
            datagram = inbox.receive()
            if datagram is None:
                return
            size = len(datagram)
            offset = 0
            unpack = HEADER_UNPACK_FROM
            deliver = self.deliver
            done = self.done
            q, word = self.q, self.current_word
            while offset + HEADER_SIZE <= size:
                type_, flags, port, reactor, src, session, seq, length = unpack(datagram, offset)
                start = offset + HEADER_SIZE
                end = start + length
                if flags or src > LAST_REACTOR_MAILBOX or self.waiting is not None or type_ == T_REPLAY:
                    inbox.parse(datagram[offset:end])  # the general path, this message alone
                    offset = end
                    continue
                offset = end
                last = done.get(src)
                if last is not None and not 0 < ((seq - last) & MASK) < HALF:  # (not after(seq, last))
                    continue  # handled already (it was replayed and is still queued too)
                q[word] = (-src << 32) | seq  # the suspect, should we die now
                try:
                    deliver(type_, flags, port, reactor, session, datagram[start:end])
                except SystemExit:
                    done[src] = seq  # exit() in a callback: handled, not to be redelivered
                    raise
                done[src] = seq
            if not inbox.mid_message:
                return  # one whole message per wake-up (see messages.Inbox.on_readable)

    def on_message(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        """The inbox's handler: a reactor thread's events are numbered (the header's msg_id)."""
        if src > LAST_REACTOR_MAILBOX:  # (not messages.is_reactor_mailbox(src), inlined)
            self.other(type_, flags, port, reactor, session, payload, src)
            return
        seq = self.inbox.msg_id
        waiting = self.waiting
        if type_ == messages.T_REPLAY:
            held = waiting.pop(src, []) if waiting is not None else []
            for entry_seq, entry_type, entry_session, entry_payload, entry_port, entry_flags in pickle.loads(payload):
                self._one(src, entry_seq, entry_type, entry_flags, entry_port, reactor, entry_session, entry_payload)
            for message in held:
                self._one(src, *message)
            return
        if waiting is not None and src in waiting:
            waiting[src].append((seq, type_, flags, port, reactor, session, payload))
            return
        # _one, inlined for the event of every request (a frame less: about 1,500 instructions)
        last = self.done.get(src)
        if last is not None and not 0 < ((seq - last) & MASK) < HALF:  # (not after(seq, last))
            return  # handled already (it was replayed and is still queued too)
        self.q[self.current_word] = (-src << 32) | seq
        try:
            self.deliver(type_, flags, port, reactor, session, payload)
        except SystemExit:
            self.done[src] = seq
            raise
        self.done[src] = seq

    def _one(self, src: int, seq: int, type_: int, flags: int, port: int, reactor: int, session: int, payload: bytes) -> None:
        last = self.done.get(src)
        if last is not None and not after(seq, last):
            return  # handled already (it was replayed and is still queued too)
        self.q[self.current_word] = (-src << 32) | seq  # the suspect, should we die now
        try:
            self.deliver(type_, flags, port, reactor, session, payload)
        except SystemExit:
            self.done[src] = seq  # exit() in a callback: handled, not to be redelivered
            raise
        self.done[src] = seq

    def _stop_waiting(self) -> None:
        waiting, self.waiting = self.waiting, None
        for src, held in (waiting or {}).items():
            log.warning("no redelivery answer from reactor mailbox %d; handling its %d queued events", src, len(held))
            for message in held:
                self._one(src, *message)

    def put_acks(self) -> None:
        for src, seq in self.done.items():
            if self.acked.get(src) != seq:
                box = self.boxes.get(src)
                if box is None:
                    box = self.boxes[src] = self.link.outbox(src)
                box.put(messages.T_ACK, seq)
                self.acked[src] = seq
