"""A send_message bigger than a mailbox datagram survives the receiving worker being stopped.

Between worker processes (BASE, PROCESS) a message over messages.CHUNK_SIZE goes as many
datagrams that the receiver reassembles. If the receiver is told to stop after reading the
first chunks, the rest are still on their way (the sender writes them as the mailbox drains).
The stopping worker must read on until the message is whole and deliver it before it leaves:
its replacement, reading the same mailbox, would get chunks without their start and drop
them, although send_message returned True (project rule: nothing accepted is lost).

The timing is made with gates (sockets the test holds): worker 1 is held in worker_start;
then worker 0 (held in its own worker_start until then, so no stop can reach worker 1
before it runs) fills worker 1's mailbox with the first chunks, asks for worker 1's stop and
holds itself, so the manager's stop lands in the mailbox behind those chunks and ahead of
the rest. The test releases worker 1 (it reads the chunks, then the stop), and
releases worker 0 only after HOLD seconds or worker 1's worker_stop, whichever is first: a
sender that is slow to finish (busy in a callback) must be waited for, up to max_wait_time.
THREAD mode has no chunks (messages between worker threads are queued objects); it runs
the same scenario as a check of the same promise.
"""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
from worker_gates import first_instance, gate, two_gates, wait_at_gate

pytestmark = pytest.mark.timeout(60)

BIG = bytes(range(256)) * ((12 << 20) // 256)  # 12 MiB, about 190 chunks
DIGEST = hashlib.sha256(BIG).hexdigest()
HOLD = 1.5  # seconds worker 0 stays busy mid-send unless worker 1 leaves first (max_wait_time is 5)


@pytest.mark.parametrize("trigger", ["stop", "stop_wait", "reload_async", "self"])
def test_big_message_in_flight_when_the_receiver_stops_arrives_once(run_server, mode, trigger, tmp_path):
    hold_1, hold_0 = gate(15), gate(15)
    port_1, port_0 = hold_1.getsockname()[1], hold_0.getsockname()[1]
    markers = str(tmp_path / "started-%d")

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            if not first_instance(markers, worker_id):  # replacements start freely
                return
            if worker_id == 1:
                wait_at_gate(port_1, emit)
            elif worker_id == 0:
                held = socket.create_connection(("127.0.0.1", port_0))
                held.recv(1)  # worker 1 is held in its worker_start now
                ok = srv.send_message("first", 1), srv.send_message(BIG, 1)
                srv.after(1, lambda: busy(srv, ok, held))  # (the loop has written what fits by then)

        def busy(srv, ok, held):
            if trigger == "stop":
                asked = srv.stop(1)
            elif trigger == "stop_wait":
                asked = srv.stop(1, True)
            elif trigger == "reload_async":
                asked = srv.reload()
            else:
                asked = True  # worker 1 stops itself on the first message
            with held:
                emit("filled", sent=list(ok), asked=asked)
                held.recv(1)

        def on_pipe_message(srv, src, message):
            if message == "first":
                emit("first", pid=srv.worker_tid or os.getpid())
                if trigger == "self":
                    srv.stop()
                return
            emit("big", src=src, worker_id=srv.worker_id, size=len(message), digest=hashlib.sha256(message).hexdigest(), pid=srv.worker_tid or os.getpid())

        server.on("worker_start", on_worker_start)
        server.on("worker_stop", lambda srv, worker_id: emit("worker_stop", worker_id=worker_id, pid=srv.worker_tid or os.getpid()))
        server.on("pipe_message", on_pipe_message)
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    settings = {"worker_num": 2, "max_wait_time": 5, "reload_async": trigger == "reload_async"}
    with hold_1, hold_0:
        handle = run_server(setup, mode=mode, settings=settings, wait_for=None)
        with two_gates(hold_1, hold_0, handle, held_timeout=15) as (gate_1, gate_0):
            gate_0.sendall(b"!")  # worker 0 sends, asks for the stop, then waits again
            filled = handle.wait("filled", timeout=15)
            assert filled["sent"] == [True, True] and filled["asked"] is True
            gate_1.sendall(b"!")  # worker 1 reads the first chunks, then its stop
            try:
                stopped = handle.wait("worker_stop", timeout=HOLD, worker_id=1)
            except AssertionError:
                stopped = None  # still there after HOLD seconds: it waits for the rest
            gate_0.sendall(b"!")  # worker 0 writes the rest of the chunks
            big = handle.wait("big", timeout=15)
    assert big["size"] == len(BIG) and big["digest"] == DIGEST and big["src"] == 0 and big["worker_id"] == 1
    first = handle.wait("first")
    if trigger != "self":
        # the stop reached worker 1 while it held part of the message: the old instance ends it
        assert big["pid"] == first["pid"]
    if stopped is None:
        stopped = handle.wait("worker_stop", worker_id=1)
    assert stopped["pid"] == first["pid"]  # worker 1 did stop
    assert handle.stop() == 0
    late = [e for e in handle.drain(0.2) if e["event"] == "big"]
    assert not late, f"delivered more than once: {late}"
