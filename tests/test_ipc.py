"""The pipe message format on real socketpairs: batching, chunking, orphans, blocked pipes."""

from __future__ import annotations

import os

import pytest

from threadswoole.ipc import messages
pytestmark = pytest.mark.timeout(30)


def _pair():
    inbox, post = messages.make_pipe()
    received = []
    reader = messages.Inbox(inbox, lambda *message: received.append(message))
    return inbox, post, reader, received


def test_small_messages_are_batched_into_one_datagram():
    inbox, post, reader, received = _pair()
    box = messages.Outbox(post, src=3)
    for i in range(50):
        box.put(messages.T_DATA, i + 1, b"payload-%d" % i, port=2, reactor=1)
    assert box.flush()
    assert inbox.recv(1 << 20)  # exactly one datagram holds all fifty
    with pytest.raises(BlockingIOError):
        inbox.recv(1)
    for i in range(50):
        box.put(messages.T_DATA, i + 1, b"payload-%d" % i, port=2, reactor=1)
    box.flush()
    reader.on_readable()
    assert len(received) == 50
    type_, flags, port, reactor, src, session, payload = received[7]
    assert (type_, port, reactor, src, session, payload) == (messages.T_DATA, 2, 1, 3, 8, b"payload-7")
    inbox.close()
    post.close()


def test_big_payloads_are_chunked_and_reassembled_intact():
    inbox, post, reader, received = _pair()
    box = messages.Outbox(post, src=0)
    payload = os.urandom(5 * 1024 * 1024 + 123)
    box.put(messages.T_SEND, 42, payload)
    box.put(messages.T_SEND, 43, b"after")
    while box.has_pending:
        box.flush()
        reader.on_readable()
    reader.on_readable()
    assert [(m[5], m[6]) for m in received] == [(42, payload), (43, b"after")]
    assert received[0][1] == 0  # chunk flags are not visible to the handler
    inbox.close()
    post.close()


def test_orphan_chunks_of_a_dead_sender_are_dropped_and_the_next_message_is_whole():
    inbox, post, reader, received = _pair()
    payload = os.urandom(300 * 1024)
    # What a dead predecessor leaves: the middle and end of a chunked message, no BEGIN.
    head = messages.HEADER
    chunks = [payload[i : i + messages.CHUNK_SIZE] for i in range(0, len(payload), messages.CHUNK_SIZE)]
    for index, chunk in enumerate(chunks[1:], start=1):
        flags = messages.FLAG_CHUNK | (messages.FLAG_END if index == len(chunks) - 1 else 0)
        post.send(head.pack(messages.T_DATA, flags, 0, 0, 5, 9, 77, len(chunk)) + chunk)
    # ... then the replacement's reactor sends a fresh message from the same source
    box = messages.Outbox(post, src=5)
    fresh = os.urandom(200 * 1024)
    box.put(messages.T_DATA, 10, fresh)
    while box.has_pending:
        box.flush()
        reader.on_readable()
    reader.on_readable()
    assert [(m[5], m[6]) for m in received] == [(10, fresh)]
    assert reader.orphans == len(chunks) - 1
    inbox.close()
    post.close()


def test_a_half_sent_message_is_discarded_when_its_source_begins_another():
    inbox, post, reader, received = _pair()
    head = messages.HEADER
    post.send(head.pack(messages.T_SEND, messages.FLAG_CHUNK | messages.FLAG_BEGIN, 0, 0, 2, 1, 5, 3) + b"abc")
    box = messages.Outbox(post, src=2)
    box.put(messages.T_SEND, 2, b"x" * (messages.CHUNK_SIZE * 2))
    while box.has_pending:
        box.flush()
        reader.on_readable()
    assert [(m[5], len(m[6])) for m in received] == [(2, messages.CHUNK_SIZE * 2)]
    assert reader.orphans == 1
    inbox.close()
    post.close()


def test_a_full_pipe_reports_blocked_and_keeps_the_data():
    inbox, post, reader, received = _pair()
    blocked = []
    box = messages.Outbox(post, src=1, on_blocked=blocked.append)
    for i in range(400):
        box.put(messages.T_DATA, i + 1, b"y" * 60000)
    assert box.flush() is False and blocked == [box]
    assert box.pending_bytes > 0
    while box.has_pending:
        reader.on_readable()
        box.flush()
    while len(received) < 400:  # one wake-up reads at most MAX_DATAGRAMS_PER_WAKEUP
        before = len(received)
        reader.on_readable()
        assert len(received) > before
    assert [m[5] for m in received] == list(range(1, 401))
    inbox.close()
    post.close()


class _Link:
    """The part of a MailboxLink a redelivery Sender uses: one outbox per worker."""

    def __init__(self, post) -> None:
        self.post = post
        self.boxes: dict[int, messages.Outbox] = {}

    def outbox(self, worker: int) -> messages.Outbox:
        return self.boxes.setdefault(worker, messages.Outbox(self.post, src=messages.reactor_mailbox(0)))


def test_a_sender_numbers_events_and_an_ack_releases_exactly_those_finished():
    from threadswoole.ipc import redelivery

    inbox, post, reader, received = _pair()
    sender = redelivery.Sender(_Link(post), reactor_id=0, worker_num=2)
    seqs = [sender.send(0, messages.T_DATA, 7, b"event-%d" % i, port=1) for i in range(10)]
    assert seqs == list(range(1, 11))
    assert sender.send(1, messages.T_DATA, 8, b"other", port=1) == 1  # numbered per worker
    sender.seal()  # (before each poll: the loop turn's events go out, and are kept)
    sender.acknowledged(0, 4)
    assert [entry[0] for entry in sender.unacknowledged(0)] == [5, 6, 7, 8, 9, 10]
    assert sender.in_flight(0, 5) and not sender.in_flight(0, 4)
    sender.acknowledged(0, 2)  # an older ack again: nothing more is released
    assert len(sender.unacknowledged(0)) == 6
    # a replay that dropped a suspect leaves a gap: the ack still releases up to its seq only
    from threadswoole.state import shared as layout

    sender.replay(0, redelivery.HELLO.pack(layout.DEATH_STUCK, 7))  # event 7 is not redelivered
    sender.acknowledged(0, 8)
    assert [entry[0] for entry in sender.unacknowledged(0)] == [9, 10]
    sender.acknowledged(0, 10)
    assert not sender.unacknowledged(0) and [entry[0] for entry in sender.unacknowledged(1)] == [1]
    # the bytes kept until acknowledged (what the reactor thread throttles clients on)
    assert sender.unacked_bytes == [0, len(b"other")]
    # what went out carries the numbers, in order, each with its payload
    sender.link.outbox(0).flush()
    sender.link.outbox(1).flush()
    reader.on_readable()
    events = [(message[5], message[6]) for message in received if message[0] == messages.T_DATA]
    assert events == [(7, b"event-%d" % i) for i in range(10)] + [(8, b"other")]
    inbox.close()
    post.close()


def test_sequence_numbers_wrap_and_acks_still_release_across_the_wrap():
    from threadswoole.ipc import redelivery

    inbox, post, _reader, _received = _pair()
    sender = redelivery.Sender(_Link(post), reactor_id=0, worker_num=1)
    sender.next_seq[0] = redelivery.MASK - 2
    seqs = [sender.send(0, messages.T_DATA, 1, b"x", port=0) for _ in range(5)]
    assert seqs == [redelivery.MASK - 1, redelivery.MASK, 1, 2, 3]
    sender.seal()
    sender.acknowledged(0, 1)
    assert [entry[0] for entry in sender.unacknowledged(0)] == [2, 3]
    inbox.close()
    post.close()


def test_unacknowledged_bytes_follow_sends_acks_and_a_replay():
    from threadswoole.ipc import redelivery
    from threadswoole.state import shared as layout

    inbox, post, _reader, _received = _pair()
    sender = redelivery.Sender(_Link(post), reactor_id=0, worker_num=1)
    for size in (100, 200, 300, 400):
        sender.send(0, messages.T_DATA, 1, b"x" * size, port=0)
    assert sender.unacked_bytes == [0]  # counted when the run is sealed (before each poll)
    sender.seal()
    assert sender.unacked_bytes == [1000]
    sender.acknowledged(0, 2)
    assert sender.unacked_bytes == [700]
    # a replay to a worker that crashed on event 3 gives it a second chance: kept, counted
    sender.replay(0, redelivery.HELLO.pack(layout.DEATH_STUCK, 3))  # stuck: event 3 is dropped
    assert [entry[0] for entry in sender.unacknowledged(0)] == [4] and sender.unacked_bytes == [400]
    sender.acknowledged(0, 4)
    assert sender.unacked_bytes == [0] and not sender.unacknowledged(0)
    inbox.close()
    post.close()


def test_a_loop_turn_of_big_events_arrives_whole_and_in_order():
    """Events over BATCH_LIMIT in one loop turn (and one over CHUNK_SIZE) are kept in runs
    about a datagram long, go out as datagrams and chunks, and arrive whole, in order; an
    acknowledgement inside a run releases exactly the events up to it."""
    from threadswoole.ipc import redelivery

    inbox, post, reader, received = _pair()
    sender = redelivery.Sender(_Link(post), reactor_id=0, worker_num=1)
    payloads = [b"%05d" % i * 2000 for i in range(60)]  # 10 KB each: 600 KB in one run
    payloads[30] = b"big" * 60_000  # 180 KB: chunked
    for i, payload in enumerate(payloads):
        sender.send(0, messages.T_DATA, i + 1, payload, port=1)
    assert sender.in_flight(0, 1)  # not sealed yet, but already counted as on its way
    sender.seal()
    assert sender.unacked_bytes == [sum(map(len, payloads))]
    box = sender.link.outbox(0)
    while box.has_pending:
        box.flush()
        reader.on_readable()
    reader.on_readable()
    assert [(m[0], m[5], m[6]) for m in received] == [(messages.T_DATA, i + 1, p) for i, p in enumerate(payloads)]
    sender.acknowledged(0, 45)  # a run done in part keeps the rest
    assert [entry[0] for entry in sender.unacknowledged(0)] == list(range(46, 61))
    assert sender.unacked_bytes == [sum(map(len, payloads[45:]))]
    assert sender.in_flight(0, 46) and not sender.in_flight(0, 45)
    inbox.close()
    post.close()
