"""loop/held_io.py: socket reads and writes that keep the GIL behave as os.read/os.write.

Real non-blocking socketpairs; each case compares with what os.read/os.write do on the same
kind of socket (values, EOF, EAGAIN, a reset peer, partial writes, what is passed on to them).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys

import pytest

from threadswoole.loop import held_io
from threadswoole.loop.held_io import HELD_READ_SIZE, HELD_WRITE_SIZE, gil_enabled, held_io_functions

pytestmark = pytest.mark.timeout(30)

needs_gil = pytest.mark.skipif(not gil_enabled(), reason="held I/O exists only where there is a GIL")


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp_pair():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    client.setblocking(False)
    server.setblocking(False)
    yield client, server
    client.close()
    server.close()


def test_none_without_a_gil(monkeypatch):
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert held_io_functions() is None
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    assert held_io_functions() is not None


@needs_gil
def test_read_and_write_move_the_bytes(pair):
    read, write = held_io_functions()
    a, b = pair
    assert write(a.fileno(), b"hello") == 5
    assert read(b.fileno(), 512) == b"hello"
    payload = bytes(range(256)) * 200  # 51,200 bytes: a read as large as a connection's
    assert write(a.fileno(), payload) == len(payload)
    got = b""
    while len(got) < len(payload):
        got += read(b.fileno(), HELD_READ_SIZE)
    assert got == payload


@needs_gil
def test_empty_socket_raises_blocking_io_error_as_os_read(pair):
    read, _write = held_io_functions()
    _a, b = pair
    with pytest.raises(BlockingIOError) as held:
        read(b.fileno(), 512)
    with pytest.raises(BlockingIOError) as plain:
        os.read(b.fileno(), 512)
    assert held.value.errno == plain.value.errno == errno.EAGAIN


@needs_gil
def test_end_of_stream_is_empty_bytes(pair):
    read, _write = held_io_functions()
    a, b = pair
    a.close()
    assert read(b.fileno(), 512) == b""


@needs_gil
def test_reset_peer_raises_the_same_error_as_os_read(tcp_pair):
    read, _write = held_io_functions()
    client, server = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    import select
    select.select([server], [], [], 5)
    with pytest.raises(ConnectionResetError) as caught:
        read(server.fileno(), 512)
    assert caught.value.errno == errno.ECONNRESET


@needs_gil
def test_write_to_a_full_socket_is_partial_then_blocking(pair):
    _read, write = held_io_functions()
    a, _b = pair
    chunk = b"x" * 65536
    sent = []
    with pytest.raises(BlockingIOError):
        for _ in range(10_000):
            sent.append(write(a.fileno(), chunk))
    assert sent and all(0 < n <= len(chunk) for n in sent)


@needs_gil
def test_write_to_a_closed_peer_raises_broken_pipe(pair):
    _read, write = held_io_functions()
    a, b = pair
    b.close()
    with pytest.raises(BrokenPipeError):
        write(a.fileno(), b"late")


@needs_gil
def test_what_it_does_not_take_goes_to_os_read_and_os_write(pair, monkeypatch):
    calls = []
    real_read, real_write = os.read, os.write
    monkeypatch.setattr(held_io.os, "read", lambda fd, n: calls.append(("read", n)) or real_read(fd, n))
    monkeypatch.setattr(held_io.os, "write", lambda fd, d: calls.append(("write", type(d).__name__)) or real_write(fd, d))
    read, write = held_io_functions()
    a, b = pair
    assert write(a.fileno(), memoryview(b"view")) == 4  # not bytes: os.write
    assert read(b.fileno(), HELD_READ_SIZE + 1) == b"view"  # larger than the buffer: os.read
    with pytest.raises(TypeError):
        write(a.fileno(), "text")  # os.write's own error, as the send path expects
    assert write(a.fileno(), b"bytes") == 5 and read(b.fileno(), 512) == b"bytes"  # held: no call
    assert write(a.fileno(), b"L" * (HELD_WRITE_SIZE + 1)) > 0  # a large copy releases the GIL
    assert calls == [("write", "memoryview"), ("read", HELD_READ_SIZE + 1), ("write", "str"), ("write", "bytes")]


@needs_gil
def test_each_pair_has_its_own_buffer(pair):
    read1, write1 = held_io_functions()
    read2, _write2 = held_io_functions()
    a, b = pair
    write1(a.fileno(), b"first")
    first = read1(b.fileno(), 512)
    write1(a.fileno(), b"SECOND")
    second = read2(b.fileno(), 512)
    assert (first, second) == (b"first", b"SECOND")  # the first result is not overwritten


@needs_gil
def test_held_poll_lists_ready_fds_as_epoll_poll_does(pair):
    import select

    a, b = pair
    epoll = select.epoll()
    try:
        poll = held_io.held_poll(epoll.fileno())
        if poll is None:
            pytest.skip("no known struct epoll_event layout on this CPU")
        epoll.register(b.fileno(), select.EPOLLIN)
        epoll.register(a.fileno(), select.EPOLLOUT)
        assert poll() == [(a.fileno(), select.EPOLLOUT)]  # b has nothing to read yet
        a.send(b"ping")
        assert sorted(poll()) == sorted(epoll.poll(0)) == sorted([(a.fileno(), select.EPOLLOUT), (b.fileno(), select.EPOLLIN)])
        epoll.unregister(a.fileno())
        b.recv(16)
        assert poll() == []
    finally:
        epoll.close()


@needs_gil
def test_held_poll_of_a_closed_epoll_raises_as_epoll_poll(pair):
    import select

    epoll = select.epoll()
    fd = os.dup(epoll.fileno())
    epoll.close()
    poll = held_io.held_poll(fd)
    os.close(fd)
    if poll is None:
        pytest.skip("no known struct epoll_event layout on this CPU")
    with pytest.raises(OSError) as caught:
        poll()
    assert caught.value.errno == errno.EBADF


def test_held_poll_is_none_without_a_gil(monkeypatch):
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert held_io.held_poll(0) is None


@needs_gil
def test_a_reactor_with_held_polls_still_sleeps_wakes_and_dispatches(pair):
    """keep_gil_for_ready_polls: ready fds come from the held poll; with none ready the loop
    still blocks in the real poll and is woken by a post from another thread, then a timer."""
    import threading

    from threadswoole.loop.reactor import EPOLLIN, Reactor

    a, b = pair
    reactor = Reactor("held")
    seen = []

    def on_readable(_mask):
        seen.append(("read", b.recv(64)))
        # nothing is ready now: the loop blocks until this other thread's post arrives
        threading.Thread(target=lambda: reactor.post(on_posted)).start()

    def on_posted():
        seen.append("posted")
        reactor.after(20, on_timer)

    def on_timer():
        seen.append("timer")
        reactor.stop()

    try:
        if not reactor.keep_gil_for_ready_polls():
            pytest.skip("no held poll here")
        reactor.add(b.fileno(), EPOLLIN, on_readable)
        a.send(b"one")
        reactor.after(5000, reactor.stop)  # (a bound on the test, not a synchronisation)
        reactor.run()
        assert seen == [("read", b"one"), "posted", "timer"]
    finally:
        reactor.close()
