"""websocket.Server end to end, the API of §9 in every mode: push (opcodes, finish flags),
exist / is_established / websocket_status across the lifecycle, disconnect with a code and
reason, pack/unpack through a real connection, plain HTTP on the same port, automatic pong,
the close callback. One server per mode for the module (`command_app`)."""

from __future__ import annotations

import socket

import pytest

from threadswoole.errors import ErrorCode
from websocket_server_helpers import (  # fresh_events: an autouse fixture
    fresh_events,  # noqa: F401
    BINARY, CLOSE, PING, PONG, TEXT, WsClient, command_app, frame, module_ws_server, ws_server_class,
)

pytestmark = pytest.mark.timeout(60)

server = module_ws_server(command_app(), {"worker_num": 1})


def test_open_reports_an_established_connection_and_the_first_push_arrives(server):
    client = WsClient(server, path="/room?x=1")
    assert client.status == 101 and client.headers["upgrade"].lower() == "websocket"
    fd = client.recv_message().json()["fd"]
    opened = server.wait("open", fd=fd)
    assert opened["path"] == "/room" and opened["exist"] is True and opened["established"] is True
    assert opened["alias"] is True and opened["websocket_status"] == 3 and opened["plain_exist"] is True
    client.shutdown()
    server.wait("close", fd=fd)


def test_push_text_and_binary_and_echo_keep_their_opcodes(server):
    client = WsClient(server, read_fd=True)
    client.command("push", data="héllo", opcode=TEXT)
    assert server.wait("pushed")["ok"] is True
    got = client.recv_message()
    assert (got.opcode, got.data) == (TEXT, "héllo".encode())
    client.command("push", hex=bytes(range(256)).hex(), opcode=BINARY)
    assert server.wait("pushed")["ok"] is True
    got = client.recv_message()
    assert (got.opcode, got.data) == (BINARY, bytes(range(256)))
    for size in (0, 125, 126, 65535, 65536, 1 << 20):
        payload = bytes(i & 0xFF for i in range(size))
        client.send(payload)
        got = client.recv_message()
        assert got.opcode == BINARY and got.data == payload
    client.shutdown()


def test_a_fragmented_push_arrives_as_frames_with_their_fin_bits(server):
    client = WsClient(server, read_fd=True)
    client.command("push_many", frames=[["one ", TEXT, False], ["two ", 0, False], ["three", 0, True]])
    assert server.wait("pushed")["ok"] == [True, True, True]
    frames = [client.recv_frame() for _ in range(3)]
    assert [(f.opcode, f.fin, f.data) for f in frames] == [(TEXT, False, b"one "), (0, False, b"two "), (0, True, b"three")]
    client.shutdown()


def test_a_fragmented_client_message_reaches_on_message_whole_with_pings_between(server):
    client = WsClient(server, read_fd=True)
    client.send_raw(frame(BINARY, b"ab", fin=False) + frame(PING, b"p1") + frame(0, b"cd", fin=False) + frame(0, b"ef"))
    pong = client.recv_frame()
    assert (pong.opcode, pong.data) == (PONG, b"p1")  # the automatic pong, between fragments
    got = client.recv_message()
    assert (got.opcode, got.data) == (BINARY, b"abcdef")
    seen = server.wait("message", fd=client.fd)
    assert seen["size"] == 6 and seen["finish"] is True
    client.shutdown()


def test_a_ping_is_answered_automatically_and_never_reaches_on_message(server):
    client = WsClient(server, read_fd=True)
    client.send_raw(frame(PING, b"are you there"))
    pong = client.recv_frame()
    assert (pong.opcode, pong.data, pong.fin) == (PONG, b"are you there", True)
    client.send_raw(frame(PONG, b"unsolicited"))  # dropped
    client.send(b"after")
    assert client.recv_message().data == b"after"
    assert not [e for e in server.drain() if e["event"] == "control"]
    client.shutdown()


def test_push_to_a_bad_fd_an_unknown_fd_or_with_a_bad_opcode_is_false(server):
    client = WsClient(server, read_fd=True)
    client.command("push", to=999_999, data="x")
    event = server.wait("pushed")
    assert event["ok"] is False and event["error"] == ErrorCode.WEBSOCKET_BAD_CLIENT
    client.command("push", data="x", opcode=3)
    event = server.wait("pushed")
    assert event["ok"] is False and event["error"] == ErrorCode.WEBSOCKET_BAD_OPCODE
    client.send(b"still served")
    assert client.recv_message().data == b"still served"
    client.shutdown()


def test_push_of_a_control_frame_that_rfc_6455_forbids_is_false_and_sends_nothing(server):
    client = WsClient(server, read_fd=True)
    for opcode, size, finish, error in ((PING, 126, True, ErrorCode.DATA_LENGTH_TOO_LARGE),
                                        (PONG, 200, True, ErrorCode.DATA_LENGTH_TOO_LARGE),
                                        (CLOSE, 130, True, ErrorCode.DATA_LENGTH_TOO_LARGE),
                                        (PING, 5, False, ErrorCode.WEBSOCKET_BAD_OPCODE)):
        client.command("push", data="p" * size, opcode=opcode, finish=finish)
        event = server.wait("pushed")
        assert event["ok"] is False and event["error"] == error, (opcode, size, finish)
    client.command("push", data="p" * 125, opcode=PING)  # the largest a control frame may carry
    assert server.wait("pushed")["ok"] is True
    ping = client.recv_frame()
    assert (ping.opcode, ping.data) == (PING, b"p" * 125)
    client.send(b"nothing else came")
    assert client.recv_message(skip_control=False).data == b"nothing else came"
    client.shutdown()


def test_plain_http_on_the_same_port_is_served_and_is_not_a_websocket(server):
    ws = WsClient(server, read_fd=True)
    plain = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    plain.sendall(f"GET /page?to={ws.fd} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    while chunk := plain.recv(65536):
        answer += chunk
    plain.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"plain /page")
    seen = server.wait("request", uri="/page")
    assert seen["pushed_self"] is False and seen["error"] == ErrorCode.WEBSOCKET_BAD_CLIENT
    assert seen["exist"] is False and seen["websocket_status"] == 1  # connection, no handshake
    assert server.wait("request_push")["ok"] is True  # an HTTP request's callback pushes to a WebSocket
    assert ws.recv_message().data == b"from http"
    ws.shutdown()


def test_status_across_the_lifecycle_and_disconnect_with_code_and_reason(server):
    victim = WsClient(server, read_fd=True)
    admin = WsClient(server, read_fd=True)
    admin.command("status", fd=victim.fd)
    status = server.wait("status", fd=victim.fd)
    assert (status["exist"], status["established"], status["websocket_status"]) == (True, True, 3)
    for bad in ([1001], [999], [5000], [3000], [1000, "r" * 124]):
        admin.command("disconnect", fd=victim.fd, args=bad)
        event = server.wait("disconnected")
        assert event["ok"] is False, bad
    admin.command("disconnect", fd=victim.fd, args=[4321, "gone é"])
    event = server.wait("disconnected")
    assert event["ok"] is True
    # closing (4) while a PROCESS reactor still writes the close frame; gone already in BASE/THREAD
    assert event["after"]["exist"] is False
    assert event["after"]["websocket_status"] == (4 if server.mode == "process" else None)
    closing = victim.expect_close()
    assert (closing.code, closing.reason) == (4321, "gone é")
    server.wait("close", fd=victim.fd)
    admin.command("status", fd=victim.fd)
    status = server.wait("status", fd=victim.fd)
    assert status["exist"] is False and status["plain_exist"] is False and status["websocket_status"] is None
    admin.command("disconnect", fd=victim.fd, args=[1000])
    assert server.wait("disconnected")["ok"] is False  # gone
    admin.command("disconnect", args=[])  # defaults: 1000, no reason, to itself
    assert server.wait("disconnected")["ok"] is True
    closing = admin.expect_close()
    assert (closing.code, closing.reason) == (1000, "")
    victim.shutdown()
    admin.shutdown()


def test_a_client_close_is_echoed_with_its_code_and_fires_close(server):
    client = WsClient(server, read_fd=True)
    client.close(4001, "done".encode())
    echoed = client.expect_close()
    assert echoed.code == 4001
    server.wait("close", fd=client.fd)
    assert not [e for e in server.drain() if e["event"] == "control"]  # open_websocket_close_frame is off
    client.shutdown()


def test_an_abrupt_client_eof_fires_close(server):
    client = WsClient(server, read_fd=True)
    client.shutdown()
    server.wait("close", fd=client.fd)


def test_pack_and_unpack_round_trip_through_a_real_connection(server):
    from threadswoole.websocket import Server

    client = WsClient(server, read_fd=True)
    client.send_raw(Server.pack(b"packed by the client", BINARY, True, True))  # masked, as a client must
    got = client.recv_message()
    assert (got.opcode, got.data) == (BINARY, b"packed by the client")
    client.command("send_packed", hex=b"packed by the server".hex(), opcode=TEXT)
    raw = client.recv_frame()
    assert (raw.opcode, raw.fin, raw.data) == (TEXT, True, b"packed by the server")
    unpacked = Server.unpack(Server.pack("héllo", TEXT, True, True))
    assert (unpacked.data, unpacked.opcode, unpacked.finish) == ("héllo".encode(), TEXT, True)
    closing = Server.unpack(Server.pack(b"\x03\xe8bye", CLOSE))
    assert (closing.code, closing.reason) == (1000, "bye")
    assert Server.unpack(b"\x00") is False
    client.shutdown()


def test_the_alias_and_the_class(server):
    assert ws_server_class().isEstablished is not None
    client = WsClient(server, read_fd=True)
    client.command("status", fd=client.fd)
    assert server.wait("status", fd=client.fd)["alias"] is True
    client.shutdown()
