"""Server.send's fast path (the worker thread's own `_context._sender`) is the worker's only: a
user's own thread calling `server.send` while the worker sends is outside any worker (the
master's context, contract R5), so its sends raise ContextError and never reach the socket,
while every byte the worker sends arrives whole and in order, in every mode."""

from __future__ import annotations

import re
import threading

import pytest

from conftest import connect

pytestmark = pytest.mark.timeout(90)

LINES = 1500
BIG = 100_000  # every 250th chunk: more than a socket buffer takes at once, so the rest is queued


def chunk(tag: str, index: int) -> bytes:
    """Line `index` of sender `tag`: its number, a body of varying size, a newline."""
    size = BIG if index % 250 == 249 else (index % 97) * 11
    return f"{tag}{index:05d}:".encode() + tag.lower().encode() * size + b"\n"


def test_a_user_thread_sending_beside_the_worker_never_writes_and_the_worker_bytes_arrive_in_order(run_server, mode):
    def setup(server, emit):
        from threadswoole import ContextError

        def user_thread(srv, fd, refused):
            for i in range(LINES):
                try:
                    srv.send(fd, chunk("U", i))
                except ContextError:
                    refused.append(i)

        def on_receive(srv, fd, rid, data):
            if data != b"go":
                return
            refused: list[int] = []
            thread = threading.Thread(target=user_thread, args=(srv, fd, refused))
            thread.start()
            failed = [i for i in range(LINES) if srv.send(fd, chunk("W", i)) is not True]  # the worker, meanwhile
            thread.join(60)
            srv.send(fd, b"END\n")
            emit("done", failed=failed[:5], refused=len(refused))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "buffer_output_size": 16 * 1024 * 1024})
    client = connect(handle.port, timeout=30)
    client.sendall(b"go")
    expected = b"".join(chunk("W", i) for i in range(LINES)) + b"END\n"
    received = bytearray()
    while not received.endswith(b"END\n"):
        try:
            data = client.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(f"{len(received)} of {len(expected)} bytes; {handle.drain()}") from None
        assert data, f"closed after {len(received)} of {len(expected)} bytes"
        received += data
    done = handle.wait("done", timeout=30)
    assert (done["failed"], done["refused"]) == ([], LINES)
    lines = bytes(received).split(b"\n")
    for line in lines[:-2]:  # each send whole, in order: no byte of the user thread's
        assert re.fullmatch(rb"W(\d{5}):w*", line), line[:40]
    assert bytes(received) == expected
    client.close()
    assert handle.stop() == 0
