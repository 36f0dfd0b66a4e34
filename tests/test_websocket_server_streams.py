"""websocket.Server end to end, how bytes arrive and leave, in every mode: many frames in one
TCP write answered in order, a message split over many writes byte by byte, a client that
stops reading while the server pushes (push fails with 1008, memory bounded by
socket_buffer_size, others served), and a client that vanishes mid-frame (EOF or the
heartbeat releases it: connection_num back to its baseline)."""

from __future__ import annotations

import socket
import time

import pytest

from threadswoole.errors import ErrorCode
from websocket_server_helpers import (  # fresh_events: an autouse fixture
    fresh_events,  # noqa: F401
    BINARY, PING, PONG, TEXT, WsClient, command_app, frame, module_ws_server, settled, start_ws, stats_of, tree_rss,
)

pytestmark = pytest.mark.timeout(60)
MIB = 1024 * 1024

server = module_ws_server(command_app(), {"worker_num": 1})


def test_many_frames_in_one_write_are_answered_in_order(server):
    client = WsClient(server, read_fd=True)
    payloads = [f"message {i:04d}".encode() * (1 + i % 7) for i in range(300)]
    client.send_raw(b"".join(frame(BINARY if i % 2 else TEXT, p) for i, p in enumerate(payloads)))
    got = [client.recv_message() for _ in payloads]
    assert [g.data for g in got] == payloads
    assert [g.opcode for g in got] == [BINARY if i % 2 else TEXT for i in range(300)]
    client.shutdown()


def test_fragmented_messages_and_pings_pipelined_in_one_write(server):
    client = WsClient(server, read_fd=True)
    stream = b""
    for i in range(50):
        stream += frame(TEXT, b"part-a ", fin=False) + frame(PING, str(i).encode()) + frame(0, f"part-b {i}".encode())
    client.send_raw(stream)
    messages, pongs = [], []
    while len(messages) < 50 or len(pongs) < 50:
        got = client.recv_message(skip_control=False)
        (pongs if got.opcode == PONG else messages).append(got.data)
    assert messages == [f"part-a part-b {i}".encode() for i in range(50)]
    assert pongs == [str(i).encode() for i in range(50)]
    client.shutdown()


def test_a_message_split_byte_by_byte_over_many_writes(server):
    client = WsClient(server, read_fd=True)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    text = "é-split-€-𝄞".encode()
    data = frame(TEXT, text[:5], fin=False) + frame(PING, b"mid") + frame(0, text[5:])
    for byte in data:
        client.send_raw(bytes([byte]))
    pong = client.recv_frame()
    assert (pong.opcode, pong.data) == (PONG, b"mid")
    got = client.recv_message()
    assert (got.opcode, got.data) == (TEXT, text)
    large = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length, arriving in uneven pieces
    data = frame(BINARY, large)
    for start in range(0, len(data), 997):
        client.send_raw(data[start:start + 997])
    assert client.recv_message().data == large
    client.shutdown()


def test_a_client_that_vanishes_mid_frame_is_released(server):
    watcher = WsClient(server, read_fd=True)
    baseline = settled(server, watcher, lambda s: True)["connection_num"]
    vanishing = [WsClient(server, read_fd=True) for _ in range(5)]
    assert settled(server, watcher, lambda s: s["connection_num"] == baseline + 5)["connection_num"] == baseline + 5
    for index, client in enumerate(vanishing):
        whole = frame(BINARY, b"v" * 1000)
        client.send_raw(whole[:2 + index * 100])  # the header, then part of the payload
        client.shutdown()
    for client in vanishing:
        server.wait("close", fd=client.fd)
    stats = settled(server, watcher, lambda s: s["connection_num"] == baseline)
    assert stats["connection_num"] == baseline
    watcher.send(b"fine")
    assert watcher.recv_message().data == b"fine"
    watcher.shutdown()


def test_the_heartbeat_closes_a_client_stalled_mid_frame(run_server, mode):
    handle = start_ws(run_server, mode, {"heartbeat_check_interval": 1, "heartbeat_idle_time": 1})
    pinging = WsClient(handle, read_fd=True)  # pings are traffic: the heartbeat leaves it alone
    stalled = WsClient(handle, read_fd=True)
    stalled.send_raw(frame(BINARY, b"s" * 100)[:50])
    began = time.monotonic()
    closed = False
    while time.monotonic() - began < 1 + 1 + 2 and not closed:
        pinging.send_raw(frame(PING, b"alive"))
        assert pinging.recv_frame().opcode == PONG
        closed = stalled.closed_by_server(timeout=0.3)  # (also the pacing of the pings)
    assert closed, "the stalled client is still open"
    handle.wait("close", fd=stalled.fd)
    stats = settled(handle, pinging, lambda s: s["connection_num"] == 1)
    assert stats["connection_num"] == 1
    pinging.shutdown()
    stalled.shutdown()
    assert handle.stop() == 0


def test_a_client_that_stops_reading_makes_push_fail_with_1008_and_memory_stays_bounded(run_server, mode):
    buffer_size = 2 * MIB
    handle = start_ws(run_server, mode, {"socket_buffer_size": buffer_size, "buffer_output_size": 4 * MIB})
    admin = WsClient(handle, read_fd=True)
    sleeper = WsClient(handle, read_fd=True, rcvbuf=4096)
    bystander = WsClient(handle, read_fd=True)
    rss_before = tree_rss(handle)
    limit = 2000  # 2000 x 64 KiB = 125 MiB, far past what the buffers may hold
    admin.command("flood", to=sleeper.fd, size=64 * 1024, limit=limit)
    flooded = handle.wait("flooded", timeout=30)
    assert flooded["count"] < limit, "every push succeeded although the client reads nothing"
    assert flooded["error"] == ErrorCode.OUTPUT_BUFFER_OVERFLOW
    assert tree_rss(handle) - rss_before < buffer_size * 4 + 24 * MIB
    bystander.send(b"served meanwhile")
    assert bystander.recv_message().data == b"served meanwhile"
    admin.command("push", to=bystander.fd, data="pushes to others succeed")
    assert handle.wait("pushed")["ok"] is True
    assert bystander.recv_message().data == b"pushes to others succeed"
    sleeper.shutdown()
    handle.wait("close", fd=sleeper.fd)
    for client in (admin, bystander):
        client.shutdown()
    assert handle.stop() == 0


def test_stats_count_messages_as_requests(server):
    client = WsClient(server, read_fd=True)
    before = stats_of(server, client)["request_count"]
    for i in range(10):
        client.send(b"r")
        client.recv_message()
    after = settled(server, client, lambda s: s["request_count"] >= before + 11)["request_count"]
    assert after == before + 11  # ten messages and the previous stats command
    client.shutdown()
