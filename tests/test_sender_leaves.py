"""What a worker accepted with send_message reaches its target although the sender leaves.

A worker's outgoing messages are queued per destination and written as the destination's
mailbox drains. When the destination is busy (a long callback) its mailbox fills, and the
sender holds the rest. If the sender is stopped or reloaded meanwhile, it must keep writing
what it holds until it is out, for up to `max_wait_time` (the bound of a leaving worker),
not give up after a fixed second and drop messages that send_message accepted with True
(project rule: nothing accepted is lost).

Worker 1 is held in its worker_start (by a gate, a socket the test holds). Worker 0 queues
more for worker 1 than a mailbox holds (one message of many chunks, or many messages), then
leaves (it stops itself, or asks for a reload, which stops it first). Once worker 0 runs its
worker_stop the test releases worker 1, which stays busy for BUSY seconds (a slow callback)
before it reads its mailbox: longer than the old fixed flush, well within max_wait_time.
Worker 1 must then receive every byte, once. THREAD mode passes messages between threads as
queued objects (no mailbox to fill); it runs the same scenario as a check of the promise.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

import pytest
from worker_gates import first_instance, gate, two_gates, wait_at_gate

pytestmark = pytest.mark.timeout(90)

BIG = bytes(range(256)) * ((32 << 20) // 256)  # 32 MiB: more than a mailbox holds (SO_SNDBUF)
DIGEST = hashlib.sha256(BIG).hexdigest()
MANY, PIECE = 600, 48 * 1024  # 600 messages of 48 KiB (28 MiB): each in a datagram of its own
BUSY = 3.0  # seconds worker 1 is busy after worker 0 began leaving (the old flush gave up after 2)
MAX_WAIT = 10


@pytest.mark.parametrize("trigger, payload", [("stop", "big"), ("stop", "many"), ("reload", "big")])
def test_messages_queued_by_a_leaving_sender_arrive_once(run_server, mode, trigger, payload, tmp_path):
    hold_1, hold_0 = gate(), gate()
    port_1, port_0 = hold_1.getsockname()[1], hold_0.getsockname()[1]
    markers = str(tmp_path / "started-%d")
    seen: dict[str, list[int]] = {"many": []}  # (per worker process: worker 1's copy counts)

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            if not first_instance(markers, worker_id):  # replacements start freely
                return
            if worker_id == 1:
                wait_at_gate(port_1, emit)  # released once worker 0 is leaving
                time.sleep(BUSY)  # a slow callback: the mailbox is not read meanwhile
                emit("busy_done")
            elif worker_id == 0:
                wait_at_gate(port_0)  # worker 1 is held in its worker_start now
                if payload == "big":
                    ok = [srv.send_message(BIG, 1)]
                else:
                    ok = [srv.send_message((index, bytes([index % 256]) * PIECE), 1) for index in range(MANY)]
                asked = srv.reload() if trigger == "reload" else srv.stop()
                emit("sent", all_true=all(ok), count=len(ok), asked=asked)

        def on_worker_stop(srv, worker_id):
            emit("worker_stop", worker_id=worker_id, pid=srv.worker_tid or os.getpid())

        def on_pipe_message(srv, src, message):
            if isinstance(message, bytes):
                emit("big", src=src, worker_id=srv.worker_id, size=len(message), digest=hashlib.sha256(message).hexdigest())
                return
            index, data = message
            assert data == bytes([index % 256]) * PIECE
            seen["many"].append(index)
            if len(seen["many"]) == MANY:
                emit("many", src=src, worker_id=srv.worker_id, indexes=seen["many"])
            elif len(seen["many"]) > MANY:
                emit("extra", index=index)

        server.on("worker_start", on_worker_start)
        server.on("worker_stop", on_worker_stop)
        server.on("pipe_message", on_pipe_message)
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    settings = {"worker_num": 2, "max_wait_time": MAX_WAIT}
    with hold_1, hold_0:
        handle = run_server(setup, mode=mode, settings=settings, wait_for=None)
        with two_gates(hold_1, hold_0, handle) as (gate_1, gate_0):
            gate_0.sendall(b"!")  # worker 0 queues its messages for worker 1, then leaves
            sent = handle.wait("sent", timeout=20)
            assert sent["all_true"] and sent["asked"] is True
            handle.wait("worker_stop", timeout=20, worker_id=0)  # it is leaving now
            gate_1.sendall(b"!")  # worker 1 is busy BUSY seconds, then reads its mailbox
            handle.wait("busy_done", timeout=20)
            if payload == "big":
                big = handle.wait("big", timeout=MAX_WAIT + 10)
                assert big["size"] == len(BIG) and big["digest"] == DIGEST
            else:
                big = handle.wait("many", timeout=MAX_WAIT + 10)
                assert big["indexes"] == list(range(MANY))  # every one, in order
    assert big["src"] == 0 and big["worker_id"] == 1
    assert handle.stop(timeout=MAX_WAIT * 3) == 0
    late = [e for e in handle.drain(0.2) if e["event"] in ("big", "many", "extra")]
    assert not late, f"delivered more than once: {late}"


@pytest.mark.parametrize("mode", ["base", "process"])
def test_a_leaving_sender_that_cannot_deliver_in_max_wait_time_says_what_it_dropped(run_server, mode, tmp_path):
    """The bound holds (a leaving worker never waits past max_wait_time for a destination
    that does not read) and the loss is not silent: a warning names the messages and bytes."""
    hold_1, hold_0 = gate(), gate()
    port_1, port_0 = hold_1.getsockname()[1], hold_0.getsockname()[1]
    markers = str(tmp_path / "started-%d")
    log_file = str(tmp_path / "server.log")
    max_wait = 1.5

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            if not first_instance(markers, worker_id):
                emit("restarted", worker_id=worker_id)
                return
            if worker_id == 1:
                wait_at_gate(port_1, emit)  # held until worker 0 has left (its replacement started)
            elif worker_id == 0:
                wait_at_gate(port_0)
                emit("sent", ok=srv.send_message(BIG, 1), asked=srv.stop())

        server.on("worker_start", on_worker_start)
        server.on("worker_stop", lambda srv, worker_id: emit("worker_stop", worker_id=worker_id))
        server.on("pipe_message", lambda srv, src, message: emit("big", size=len(message)))
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    settings = {"worker_num": 2, "max_wait_time": max_wait, "log_file": log_file}
    with hold_1, hold_0:
        handle = run_server(setup, mode=mode, settings=settings, wait_for=None)
        with two_gates(hold_1, hold_0, handle) as (gate_1, gate_0):
            gate_0.sendall(b"!")
            sent = handle.wait("sent", timeout=20)
            assert sent["ok"] is True and sent["asked"] is True
            handle.wait("worker_stop", timeout=20, worker_id=0)
            left = time.monotonic()
            handle.wait("restarted", timeout=max_wait + 10, worker_id=0)  # worker 0 did leave
            assert time.monotonic() - left < max_wait + 5
            gate_1.sendall(b"!")
    assert handle.stop(timeout=30) == 0
    assert not [e for e in handle.drain(0.2) if e["event"] == "big"]  # (never whole)
    text = open(log_file).read()
    assert re.search(r"worker 0 \(leaving\): dropped 1 messages \(\d+ bytes\) for mailbox 1", text), text[-2000:]
