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
# a message header's msg_id (the seq) and length, where they sit in it (messages.HEADER)
RUN_FIELDS = struct.Struct("=II")
SEQ_OFFSET = HEADER_SIZE - RUN_FIELDS.size


class Sender:
    """Reactor side: numbered events per worker, kept until acknowledged.

    Events are framed (header and payload, as they go on the wire) into one run per worker;
    before each poll `seal` moves every run into its worker's outbox in one piece and keeps
    the same bytes, with the first and last sequence numbers, until acknowledged. An event
    therefore costs a header pack and two appends here (no tuple, no deque entry, no size
    check per event), and an acknowledgement, which the worker sends once per loop turn,
    releases whole runs."""

    def __init__(self, link: Any, reactor_id: int, worker_num: int) -> None:
        self.link = link
        self.reactor_id = reactor_id
        self.next_seq = [0] * worker_num
        self.boxes: list[Any] = [link.outbox(worker) for worker in range(worker_num)]
        self.src = self.boxes[0].src if worker_num else 0
        self.runs = [bytearray() for _ in range(worker_num)]  # events framed since the last seal
        self.run_first = [0] * worker_num  # seq of the first event in runs[worker]
        self.sealing: list[int] = []  # workers whose run is not empty
        # sealed runs not acknowledged yet, oldest first: (first seq, last seq, framed events,
        # their payload bytes, where the first unacknowledged one starts in them)
        self.pending: list[collections.deque] = [collections.deque() for _ in range(worker_num)]
        # payload bytes sent to each worker and not acknowledged yet (sealed runs): kept here
        # until then, so the reactor thread stops reading the clients of a worker over UNACKED_LIMIT
        self.unacked_bytes = [0] * worker_num
        self.redelivered: set[tuple[int, int]] = set()  # (worker, seq) suspects given a second chance

    def send(self, worker: int, type_: int, session: int, payload: bytes, port: int, flags: int = 0) -> int:
        """Number the event and frame it into `worker`'s run (sent and kept at `seal`); returns
        its sequence number."""
        seq = self.next_seq[worker] + 1
        if seq > MASK:
            seq = 1
        self.next_seq[worker] = seq
        run = self.runs[worker]
        if not run:
            self.run_first[worker] = seq
            self.sealing.append(worker)
        run += HEADER_PACK(type_, flags, port, self.reactor_id, self.src, session, seq, len(payload))
        run += payload
        if len(run) > BATCH_LIMIT:
            # A run stays about one datagram long: big payloads (a client sending 64 KiB
            # requests) are kept in runs of their own size, not in one block per loop turn
            # (stress faults stalled_reader: blocks of megabytes kept the tree's RSS high).
            self.sealing.remove(worker)
            self._seal_run(worker)
        return seq

    def seal(self) -> None:
        """Before each poll (the link's before_flush): every run goes to its outbox and is kept."""
        sealing = self.sealing
        if not sealing:
            return
        for worker in sealing:
            self._seal_run(worker)
        sealing.clear()

    def _seal_run(self, worker: int) -> None:
        run = self.runs[worker]
        blob = bytes(run)
        run.clear()
        first, last = self.run_first[worker], self.next_seq[worker]
        payload_bytes = len(blob) - (((last - first) & MASK) + 1) * HEADER_SIZE
        self.pending[worker].append((first, last, blob, payload_bytes, 0))
        self.unacked_bytes[worker] += payload_bytes
        self.boxes[worker].put_framed(blob)

    def in_flight(self, worker: int, seq: int) -> bool:
        """True while event `seq` sent to `worker` is not acknowledged (not finished there)."""
        pending = self.pending[worker]
        if pending:
            first = pending[0][0]
        elif self.runs[worker]:
            first = self.run_first[worker]
        else:
            return False
        return not 0 < ((first - seq) & MASK) < HALF

    def acknowledged(self, worker: int, seq: int) -> None:
        """`worker` finished every event up to `seq`: release them (whole runs at once)."""
        pending = self.pending[worker]
        popleft = pending.popleft
        released = 0
        while pending and not 0 < ((pending[0][1] - seq) & MASK) < HALF:  # its last event is done
            released += popleft()[3]
        if pending and not 0 < ((pending[0][0] - seq) & MASK) < HALF:  # a run done in part
            released += self._trim(pending, seq)
        self.unacked_bytes[worker] -= released
        if self.redelivered:
            self.redelivered = {(w, s) for w, s in self.redelivered if w != worker or after(s, seq)}

    @staticmethod
    def _trim(pending: collections.deque, seq: int) -> int:
        """Drop the events up to `seq` from the oldest run (its start moves on, the bytes are
        not copied: a big run is acknowledged event by event); returns their payload bytes."""
        first, last, blob, payload_bytes, offset = pending[0]
        released = 0
        while offset < len(blob):
            entry_seq, length = RUN_FIELDS.unpack_from(blob, offset + SEQ_OFFSET)
            if after(entry_seq, seq):
                break
            offset += HEADER_SIZE + length
            released += length
        pending[0] = (entry_seq, last, blob, payload_bytes - released, offset)
        return released

    def unacknowledged(self, worker: int) -> list[tuple]:
        """Every event kept for `worker`, oldest first: (seq, type, session, payload, port, flags)."""
        entries = []
        for _first, _last, blob, _size, offset in self.pending[worker]:
            entries.extend(framed_events(blob, offset))
        entries.extend(framed_events(bytes(self.runs[worker])))
        return entries

    def replay(self, worker: int, hello: bytes) -> None:
        """A worker (re)started: send it everything it has not acknowledged, in order, less
        the suspect event of a predecessor that was killed as stuck or crashed twice on it."""
        death, suspect = HELLO.unpack(hello) if len(hello) == HELLO.size else (layout.DEATH_PLANNED, 0)
        self.seal()  # the run goes out before the replay (the worker drops what it has handled)
        kept = self.unacknowledged(worker)
        entries = []
        for entry in kept:
            if suspect and entry[0] == suspect and death != layout.DEATH_PLANNED:
                if death == layout.DEATH_STUCK or (worker, suspect) in self.redelivered:
                    log.warning("reactor %d: not redelivering event %d (session %d): worker %d died handling it%s", self.reactor_id, suspect, entry[2], worker, " (stuck)" if death == layout.DEATH_STUCK else " twice")
                    continue
                self.redelivered.add((worker, suspect))
            entries.append(entry)
        if len(entries) != len(kept):
            pending = self.pending[worker] = collections.deque()
            if entries:
                blob = b"".join(HEADER_PACK(type_, flags, port, self.reactor_id, self.src, session, seq, len(payload)) + payload
                                for seq, type_, session, payload, port, flags in entries)
                pending.append((entries[0][0], entries[-1][0], blob, sum(len(entry[3]) for entry in entries), 0))
            self.unacked_bytes[worker] = sum(len(entry[3]) for entry in entries)
        self.link.outbox(worker).put(messages.T_REPLAY, 0, pickle.dumps(entries), reactor=self.reactor_id)
        if entries and death != layout.DEATH_PLANNED:
            log.info("reactor %d: redelivering %d unacknowledged events to worker %d", self.reactor_id, len(entries), worker)


def framed_events(blob: bytes, offset: int = 0) -> list[tuple]:
    """The events of a sealed run from `offset` on: (seq, type, session, payload, port, flags) each."""
    entries = []
    while offset + HEADER_SIZE <= len(blob):
        type_, flags, port, _reactor, _src, session, seq, length = messages.HEADER.unpack_from(blob, offset)
        start = offset + HEADER_SIZE
        offset = start + length
        entries.append((seq, type_, session, blob[start:offset], port, flags))
    return entries


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

        The hot path: a whole (unchunked) message from a reactor thread, once the wait for
        the replays is over, is delivered right here, in this loop; anything else (chunks,
        other sources, events held until a replay, the replay itself) goes through the Inbox's
        parser and `on_message`, one message at a time. Two frames less per event than
        Inbox.parse -> on_message (stress/callgrind/process_http_conns.sh).

        Why the hot path needs no duplicate check: a reactor sends an event once, and again
        only in its replay, which answers this worker's hello. So the only duplicates are of
        events sent before the replay: those still queued come before it from the same mailbox
        (FIFO per source) and are new when read; the replay's entries that were handled already
        are dropped by `on_message` (T_REPLAY takes the general path); after the replay every
        event is new."""
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
            waiting = self.waiting
            while offset + HEADER_SIZE <= size:
                type_, flags, port, reactor, src, session, seq, length = unpack(datagram, offset)
                start = offset + HEADER_SIZE
                end = start + length
                if flags or src > LAST_REACTOR_MAILBOX or waiting is not None or type_ == T_REPLAY:
                    inbox.parse(datagram[offset:end])  # the general path, this message alone
                    waiting = self.waiting  # (a replay may have ended the wait)
                    offset = end
                    continue
                offset = end
                # No duplicate check here: a duplicate is an event sent before the reactor's
                # replay (still queued, or replayed too), and the replay, as the messages before
                # it, is handled on the general path (with the check) or held while waiting.
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
