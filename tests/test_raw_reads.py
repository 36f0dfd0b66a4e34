"""Reads of a plain connection (connections/hot_path.py): the first read is small (SMALL_READ
bytes, cheap to allocate), and a read that fills it takes what else is waiting at once, so what
the peer sent in one write still reaches `receive` in one piece (and a codec sees the same
bytes), and an error the socket reports on that second read is not lost. BASE and THREAD run
the raw inline handler, PROCESS reactor threads the codec handler."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from conftest import connect, recv_exact
from threadswoole import SWOOLE_SOCK_UNIX_STREAM
from threadswoole.connections.hot_path import SMALL_READ

pytestmark = pytest.mark.timeout(60)


def _recording(server, emit):
    def on_receive(srv, fd, rid, data):
        emit("receive", size=len(data))
        srv.send(fd, b"%d;" % len(data))

    server.on("receive", on_receive)


@pytest.mark.parametrize("mode", ["base", "thread", "process"])
def test_a_write_of_any_size_reaches_receive_in_one_piece_and_reads_adapt_back_to_small(run_server, mode):
    handle = run_server(_recording, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    try:
        # small, the exact small-read size (the second read finds nothing), above it, large,
        # and small again after large ones
        for size in (64, SMALL_READ, SMALL_READ + 1, 4000, 60000, 64, 3, SMALL_READ - 1, 2000, 64):
            client.sendall(os.urandom(size))
            answer = b"%d;" % size
            assert recv_exact(client, len(answer)) == answer, size
            assert handle.wait("receive")["size"] == size
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["base", "thread", "process"])
def test_a_burst_larger_than_one_read_arrives_complete_and_in_order(run_server, mode):
    def setup(server, emit):
        received = bytearray()

        def on_receive(srv, fd, rid, data):
            received.extend(data)
            if len(received) >= 300_000:
                emit("done", ok=bytes(received) == bytes(i % 251 for i in range(300_000)))

        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    client = connect(handle.port)
    try:
        client.sendall(bytes(i % 251 for i in range(300_000)))
        assert handle.wait("done")["ok"] is True
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["base", "thread", "process"])
def test_a_reset_seen_by_the_read_after_a_full_small_read_is_reported_after_the_data(run_server, tmp_path, mode):
    """A Unix stream peer that closes with unread input resets the connection: our reads get
    its data first, then ECONNRESET. With exactly SMALL_READ bytes waiting (the connection is
    not read until a second connection confirms it: enable_delay_receive), the first read
    fills its buffer and the second sees the reset: receive gets the bytes, close the errno."""
    path = str(tmp_path / "raw.sock")

    def setup(server, emit):
        first: list[int] = []

        def on_connect(srv, fd, rid):
            if not first:
                first.append(fd)
                srv.send(fd, b"unread")
            else:
                srv.confirm(fd)  # the control connection

        def on_receive(srv, fd, rid, data):
            if fd == first[0]:
                emit("receive", size=len(data))
            else:
                srv.confirm(first[0])

        def on_close(srv, fd, rid):
            if fd == first[0]:
                emit("close", close_errno=(srv.get_client_info(fd) or {}).get("close_errno"))

        server.on("connect", on_connect)
        server.on("receive", on_receive)
        server.on("close", on_close)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "enable_delay_receive": True}, host=path, sock_type=SWOOLE_SOCK_UNIX_STREAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(path)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.settimeout(5)
    try:
        assert client.recv(6, socket.MSG_PEEK) == b"unread"  # in our queue, and left unread
        client.sendall(b"x" * SMALL_READ)
        client.close()
        control.connect(path)
        control.sendall(b"go")
        assert handle.wait("receive")["size"] == SMALL_READ
        assert handle.wait("close")["close_errno"] == errno.ECONNRESET
    finally:
        client.close()
        control.close()


@pytest.mark.parametrize("mode", ["base", "process"])
def test_length_framed_packets_around_the_small_read_size_arrive_whole(run_server, mode):
    """The codec handler reads the same way: packets whose wire size is below, exactly, or
    above SMALL_READ, and large ones, each reach `receive` whole and in order."""
    import struct

    settings = {"worker_num": 1, "open_length_check": True, "package_length_type": "N", "package_length_offset": 0, "package_body_offset": 4}
    handle = run_server(_recording, mode=mode, settings=settings)
    client = connect(handle.port)
    try:
        for wire in (64, SMALL_READ, SMALL_READ + 1, 4000, 60000, 64, SMALL_READ - 1, 64):
            client.sendall(struct.pack(">I", wire - 4) + os.urandom(wire - 4))
            answer = b"%d;" % wire
            assert recv_exact(client, len(answer)) == answer, wire
            assert handle.wait("receive")["size"] == wire
    finally:
        client.close()
