"""PROCESS shutdown: every connection's close event reaches its worker, even a busy one.

At shutdown the reactor threads close every connection and send the workers their close
events. A worker busy in a callback does not read its mailbox meanwhile; when it is full
(here with the data of a big upload queued before), the close events wait in the reactor
thread. It must go on writing them while the shutdown's max_wait_time lasts, not give up
after a fixed second (on_close would then never run for those connections).

The worker is held in its first receive callback by a gate (a socket the test holds); the
test then uploads more than the mailbox holds, opens more connections, SIGTERMs the master,
waits until the clients see their connections closed, and keeps the worker busy BUSY seconds
more before it releases it. Every connection must have had its connect and close callbacks.
(Before the fix the master stopped waiting for its reactor threads after a second and had the
manager stop the worker, whose stop could then overtake the events still queued: most runs
lost some connects and closes.)
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from conftest import connect, recv_closed
from worker_gates import first_instance, gate, wait_at_gate

pytestmark = pytest.mark.timeout(90)

UPLOAD = 64 << 20  # bytes, over several connections: more than a mailbox holds
UPLOADERS = 16
IDLE = 20  # more connections, opened behind the upload
BUSY = 2.5  # seconds the worker stays busy once the connections are closed (the old flush: 1)


def accepted(handle, port: int) -> int:
    """How many connections to `port` the server's tree has accepted (its established sockets)."""
    pairs = set()
    for proc in handle.tree():
        try:
            listed = proc.net_connections if hasattr(proc, "net_connections") else proc.connections  # psutil < 6
            pairs.update((c.laddr, c.raddr) for c in listed("tcp")
                         if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)
        except psutil.NoSuchProcess:
            pass
    return len(pairs)


def test_close_events_reach_a_busy_worker_at_shutdown(run_server, tmp_path):
    hold = gate()
    port = hold.getsockname()[1]
    markers = str(tmp_path / "held-%d")

    def setup(server, emit):
        def on_receive(srv, fd, rid, data):
            if first_instance(markers, srv.worker_id):  # only the first receive is held
                wait_at_gate(port, emit, srv.worker_id)

        server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd))
        server.on("close", lambda srv, fd, rid: emit("close", fd=fd))
        server.on("receive", on_receive)

    handle = run_server(setup, mode="process", settings={"worker_num": 1, "max_wait_time": 8})
    with hold:
        first = connect(handle.port)
        first.sendall(b"hold")
        worker_side, _ = hold.accept()
        handle.wait("held", timeout=20)
        clients = [first]
        piece = b"x" * (UPLOAD // UPLOADERS)
        for _ in range(UPLOADERS):
            client = connect(handle.port)
            client.setblocking(False)
            try:  # as much as the connection takes: the reactor thread stops reading when the worker lags
                client.send(piece)
            except BlockingIOError:
                pass
            client.settimeout(5)
            clients.append(client)
        clients += [connect(handle.port) for _ in range(IDLE)]
        # Every connection accepted before the SIGTERM: one still in the listen backlog then is
        # reset by the kernel with no connect or close callback, rightly (a loaded machine).
        deadline = time.monotonic() + 20
        while accepted(handle, handle.port) < len(clients):
            assert time.monotonic() < deadline, f"{accepted(handle, handle.port)} of {len(clients)} accepted"
            time.sleep(0.02)
        with worker_side:
            handle.signal(signal.SIGTERM)
            for client in clients:
                assert recv_closed(client, timeout=20)
            time.sleep(BUSY)  # the worker's callback goes on this long after the connections closed
            worker_side.sendall(b"!")
            assert handle.wait_exit(timeout=30) == 0
    for client in clients:
        client.close()
    events = handle.drain(0.2)
    connected = sorted(e["fd"] for e in events if e["event"] == "connect")
    closed = sorted(e["fd"] for e in events if e["event"] == "close")
    assert len(connected) == len(clients)
    assert closed == connected
