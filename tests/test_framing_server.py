"""Framing in a running server, in every mode (§17.24): length prefix, EOF check / split,
package_length_func, oversized and absurd announcements, per-port framing."""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from conftest import connect, recv_closed, recv_exact, settled_stats

pytestmark = pytest.mark.timeout(120)

SWOOLE_HEADER = {"open_length_check": True, "package_length_type": "N", "package_length_offset": 8, "package_body_offset": 16}


def swoole_packet(body: bytes, kind: int = 1, serial: int = 7) -> bytes:
    """The seed's 16-byte header {type, uid, length, serid} then the body."""
    return kind.to_bytes(4, "big") + (42).to_bytes(4, "big") + len(body).to_bytes(4, "big") + serial.to_bytes(4, "big") + body


def recording(server, emit) -> None:
    """Emit every packet (hex) and answer with its length; b"stats" is answered with stats."""

    def on_receive(srv, fd, rid, data):
        if data.endswith(b"stats"):
            emit("stats", stats=srv.stats())
        else:
            emit("packet", fd=fd, data=data.hex())
        srv.send(fd, len(data).to_bytes(4, "big"))

    server.on("receive", on_receive)
    server.on("connect", lambda srv, fd, rid: emit("connect", fd=fd))
    server.on("close", lambda srv, fd, rid: emit("close", fd=fd))


def packets(handle, count: int) -> list[bytes]:
    return [bytes.fromhex(e["data"]) for e in handle.wait_n("packet", count)]


def no_more_packets(handle, settle: float = 0.2) -> bool:
    return not [e for e in handle.drain(settle=settle) if e["event"] == "packet"]


def test_length_check_two_packets_in_one_write_and_one_packet_byte_by_byte(run_server, mode):
    handle = run_server(recording, mode=mode, settings={"worker_num": 1, **SWOOLE_HEADER})
    client = connect(handle.port)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    first, second = swoole_packet(b"hello"), swoole_packet(b"world!" * 100, serial=8)
    client.sendall(first + second)
    assert packets(handle, 2) == [first, second]
    recv_exact(client, 8)
    slow = swoole_packet(b"one byte at a time")
    for index in range(len(slow)):
        client.sendall(slow[index : index + 1])
        time.sleep(0.001)  # pacing, so most bytes arrive in their own segment
    assert packets(handle, 1) == [slow]
    assert recv_exact(client, 4) == len(slow).to_bytes(4, "big")
    assert no_more_packets(handle)
    assert handle.stop() == 0


def test_eof_check_may_merge_and_eof_split_never_does(run_server, mode):
    def setup(server, emit):
        import threadswoole

        split = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        split.set(open_eof_split=True, package_eof=b"\r\n")
        recording(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "open_eof_check": True, "package_eof": b"\r\n"})
    check_port, split_port = handle.ports
    both = b"first\r\nsecond\r\n"
    check = connect(check_port)
    check.sendall(both)
    received = [bytes.fromhex(e["data"]) for e in handle.wait_n("packet", 1)]
    received += [bytes.fromhex(e["data"]) for e in handle.drain(settle=0.2) if e["event"] == "packet"]
    assert b"".join(received) == both and all(p.endswith(b"\r\n") for p in received)
    split = connect(split_port)
    split.sendall(both + b"\x00\xffgarbage then\r\n")  # garbage before an EOF is part of that packet
    assert packets(handle, 3) == [b"first\r\n", b"second\r\n", b"\x00\xffgarbage then\r\n"]
    split.sendall(b"part")
    assert no_more_packets(handle)
    split.sendall(b"ial\r\n")
    assert packets(handle, 1) == [b"partial\r\n"]
    assert handle.stop() == 0


def test_declared_length_over_package_max_length_closes_only_that_connection(run_server, mode):
    limit = 64 * 1024
    handle = run_server(recording, mode=mode, settings={"worker_num": 1, "package_max_length": limit, **SWOOLE_HEADER})
    good = connect(handle.port)
    handle.wait("connect")
    exact = swoole_packet(b"e" * (limit - 16))  # exactly package_max_length: accepted
    good.sendall(exact)
    assert packets(handle, 1) == [exact]
    recv_exact(good, 4)
    bad = connect(handle.port)
    bad_fd = handle.wait("connect")["fd"]
    bad.sendall(swoole_packet(b"")[:8] + (limit - 16 + 1).to_bytes(4, "big") + bytes(4))  # one byte over
    assert recv_closed(bad)
    assert handle.wait("close")["fd"] == bad_fd
    good.sendall(swoole_packet(b"still served"))
    assert packets(handle, 1) == [swoole_packet(b"still served")]
    recv_exact(good, 4)
    stats = settled_stats(handle, good, request=swoole_packet(b"stats"), reply=4, predicate=lambda s: s["protocol_error_count"] >= 1)
    assert stats["protocol_error_count"] == 1 and stats["connection_num"] == 1
    assert handle.stop() == 0


def _tree_rss(handle) -> int:
    total = 0
    for proc in handle.tree():
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_a_four_gib_announcement_is_refused_at_once_without_holding_memory(run_server, mode):
    handle = run_server(recording, mode=mode, settings={"worker_num": 1, "open_length_check": True, "package_length_type": "N", "package_body_offset": 4})
    good = connect(handle.port)
    handle.wait("connect")
    before = _tree_rss(handle)
    for _ in range(3):
        bad = connect(handle.port)
        started = time.monotonic()
        try:
            bad.sendall((0xFFFFFFFF).to_bytes(4, "big") + b"\0" * (1024 * 1024))
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused while we were still writing: that is the point
        assert recv_closed(bad)
        assert time.monotonic() - started < 2  # at once, not after reading a body
        bad.close()
    after = _tree_rss(handle)
    assert after - before < 64 * 1024 * 1024, f"RSS grew by {(after - before) >> 20} MiB"
    good.sendall((2).to_bytes(4, "big") + b"ok")
    assert packets(handle, 1) == [(2).to_bytes(4, "big") + b"ok"]
    assert recv_exact(good, 4) == (6).to_bytes(4, "big")
    assert handle.stop() == 0


def test_per_port_framing_while_the_main_port_is_raw(run_server, mode):
    def setup(server, emit):
        import threadswoole

        framed = server.add_listener("127.0.0.1", 0, threadswoole.SWOOLE_SOCK_TCP)
        framed.set(**SWOOLE_HEADER)
        recording(server, emit)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    raw_port, framed_port = handle.ports
    two = swoole_packet(b"a") + swoole_packet(b"bb")
    framed = connect(framed_port)
    framed.sendall(two)
    assert packets(handle, 2) == [swoole_packet(b"a"), swoole_packet(b"bb")]
    raw = connect(raw_port)
    raw.sendall(two)
    received = [bytes.fromhex(e["data"]) for e in handle.wait_n("packet", 1)]
    received += [bytes.fromhex(e["data"]) for e in handle.drain(settle=0.2) if e["event"] == "packet"]
    assert b"".join(received) == two  # the raw port delivers bytes as they come, unframed
    assert handle.stop() == 0


def test_package_length_func_zero_minus_one_and_n(run_server, mode):
    def length(data: bytes) -> int:
        """b"L", a length byte, the body: 0 = need more, -1 = not our protocol, n = total."""
        if len(data) < 2:
            return 0
        if data[:1] != b"L":
            return -1
        return 2 + data[1]

    settings = {"worker_num": 1, "open_length_check": True, "package_length_func": length}
    handle = run_server(recording, mode=mode, settings=settings)
    client = connect(handle.port)
    client_fd = handle.wait("connect")["fd"]
    frames = [b"L\x03abc", b"L\x00", b"L\x05hello"]
    client.sendall(b"".join(frames))
    assert packets(handle, 3) == frames
    recv_exact(client, 12)
    for byte in b"L\x02hi":
        client.sendall(bytes([byte]))
        time.sleep(0.001)
    assert packets(handle, 1) == [b"L\x02hi"]
    recv_exact(client, 4)
    other = connect(handle.port)
    handle.wait("connect")
    client.sendall(b"Z\x01x")  # -1: closed
    assert recv_closed(client)
    assert handle.wait("close")["fd"] == client_fd
    stats = settled_stats(handle, other, request=b"L\x05stats", reply=4, predicate=lambda s: s["protocol_error_count"] >= 1)
    assert stats["protocol_error_count"] == 1
    assert handle.stop() == 0
