"""websocket.Server end to end, in every mode: push from everywhere §9 allows (another
connection's callback, a task worker, a user process, a timer), permessage-deflate with a
compressing client, websocket_subprotocol, the handshake callback accepting and refusing,
open_websocket_close_frame / ping_frame / pong_frame, and the `websockets` library as a client."""

from __future__ import annotations

import asyncio
import json

import pytest

from threadswoole.errors import ErrorCode
from threadswoole.protocol.websocket.handshake import accept_key
from websocket_server_helpers import (  # fresh_events: an autouse fixture
    fresh_events,  # noqa: F401
    BINARY, CLOSE, PING, PONG, TEXT, WsClient, close_payload, command_app, frame, module_ws_server, needs_websockets,
    start_ws,
)

pytestmark = pytest.mark.timeout(60)

server = module_ws_server(command_app(user_process=True),
                          {"worker_num": 2, "task_worker_num": 1, "websocket_compression": True,
                           "websocket_subprotocol": "chat"})


def test_push_from_another_connections_callback(server):
    target = WsClient(server, read_fd=True)
    sender = WsClient(server, read_fd=True)
    sender.command("push", to=target.fd, data="from a neighbour")
    assert server.wait("pushed")["ok"] is True
    assert target.recv_message().data == b"from a neighbour"
    sender.shutdown()
    target.shutdown()


def test_push_from_a_task_worker(server):
    target = WsClient(server, read_fd=True)
    target.command("task", to=target.fd, data="from a task")
    pushed = server.wait("task_push")
    assert pushed["ok"] is True and pushed["task_worker"] is True
    assert target.recv_message().data == b"from a task"
    assert server.wait("finished")["data"] == "done"
    target.shutdown()


def test_push_from_a_user_process(server):
    target = WsClient(server, read_fd=True)
    target.command("process", to=target.fd, data="from a process")
    assert server.wait("process_push")["ok"] is True
    assert target.recv_message().data == b"from a process"
    target.command("process", to=999_999, data="nobody")
    assert server.wait("process_push")["ok"] is False
    target.shutdown()


def test_push_from_a_timer(server):
    target = WsClient(server, read_fd=True)
    target.command("timer", to=target.fd, data="from a timer", ms=5)
    assert server.wait("timer_push")["ok"] is True
    assert target.recv_message().data == b"from a timer"
    target.shutdown()


@pytest.mark.parametrize("origin", ["neighbour", "task", "process", "timer"])
def test_push_to_a_compressing_client_from_anywhere(server, origin):
    target = WsClient(server, compress=True, read_fd=True)
    assert target.deflate is not None
    helper = WsClient(server, read_fd=True)
    text = "compressible " * 500
    for round_ in range(2):  # twice: the second push uses the compressor's context
        if origin == "neighbour":
            helper.command("push", to=target.fd, data=text)
        else:
            helper.command(origin, to=target.fd, data=text)
        got = target.recv_message()
        assert got.data == text.encode() and got.rsv1 is True, round_
    helper.shutdown()
    target.shutdown()


@pytest.mark.parametrize("origin", ["own", "process"])
def test_a_forbidden_control_push_to_a_compressing_client_is_false_not_an_exception(server, origin):
    target = WsClient(server, compress=True, read_fd=True)
    if origin == "own":
        target.command("push", data="p" * 200, opcode=PING)
        event = server.wait("pushed")
    else:
        target.command("process", to=target.fd, data="p" * 200, opcode=PING)
        event = server.wait("process_push")
    assert event["ok"] is False and event["error"] == ErrorCode.DATA_LENGTH_TOO_LARGE
    target.send(b"still fine")
    got = target.recv_message(skip_control=False)
    assert got.data == b"still fine"
    target.shutdown()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
def test_pushes_then_disconnect_from_another_connection_arrive_in_order(server, compress):
    target = WsClient(server, compress=compress, read_fd=True)
    helper = WsClient(server, read_fd=True)
    helper.command("push_many", to=target.fd, frames=[[f"m{i} " * 50, TEXT, True] for i in range(20)])
    assert server.wait("pushed")["ok"] == [True] * 20
    helper.command("disconnect", fd=target.fd, args=[4005, "after the pushes"])
    assert server.wait("disconnected")["ok"] is True
    assert [target.recv_message().data for _ in range(20)] == [(f"m{i} " * 50).encode() for i in range(20)]
    closing = target.expect_close()
    assert (closing.code, closing.reason) == (4005, "after the pushes")
    server.wait("close", fd=target.fd)
    helper.shutdown()
    target.shutdown()


def test_compression_is_negotiated_and_round_trips_small_and_large_messages(server):
    client = WsClient(server, compress=True, read_fd=True)
    assert client.deflate.startswith("permessage-deflate")
    for payload in (b"", b"a", "é".encode() * 10, bytes(range(256)) * 4096, b"z" * (1 << 20)):
        client.send(payload)
        got = client.recv_message()
        assert got.data == payload
        assert got.rsv1 is True
    plain = WsClient(server, read_fd=True)  # a client that offers nothing gets plain frames
    assert plain.deflate is None
    plain.send(b"q" * 5000)
    got = plain.recv_message()
    assert got.data == b"q" * 5000 and got.rsv1 is False
    client.shutdown()
    plain.shutdown()


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
])
def test_deflate_parameters_the_client_asks_for_are_honoured(server, offer):
    client = WsClient(server, compress=offer, read_fd=True)
    assert client.deflate is not None and client.deflate.startswith("permessage-deflate")
    if "server_max_window_bits=9" in offer:
        assert "server_max_window_bits=9" in client.deflate
    # the same text twice: with context takeover the second would refer back into the first;
    # a distance the window does not allow fails the client's decompressor (window = the answer's)
    text = bytes(range(256)) * 8 + b"tail " * 300
    for _ in range(3):
        client.send(text)
        assert client.recv_message().data == text
    client.shutdown()


def test_an_unknown_extension_alone_is_not_accepted(server):
    client = WsClient(server, compress="x-webkit-deflate-frame", read_fd=True)
    assert client.status == 101 and client.deflate is None
    client.send(b"plain")
    assert client.recv_message().data == b"plain"
    client.shutdown()


def test_the_configured_subprotocol_is_answered_only_when_the_client_asks(server):
    asked = WsClient(server, protocols="chat, superchat", read_fd=True)
    assert asked.headers.get("sec-websocket-protocol") == "chat"
    silent = WsClient(server, read_fd=True)
    assert "sec-websocket-protocol" not in silent.headers
    asked.shutdown()
    silent.shutdown()


@needs_websockets
def test_the_websockets_library_talks_to_the_server_compressed(server):
    try:
        from websockets.asyncio.client import connect  # websockets >= 13
    except ImportError:
        from websockets.client import connect  # type: ignore[no-redef]
    from websockets.exceptions import ConnectionClosed

    async def talk() -> dict:
        async with connect(f"ws://127.0.0.1:{server.port}/lib", subprotocols=["chat"], compression="deflate") as ws:
            fd = json.loads(await ws.recv())["fd"]
            await ws.send(b"library bytes" * 100)
            echoed = await ws.recv()
            await asyncio.wait_for(await ws.ping(b"lib-ping"), 10)
            await ws.send(json.dumps({"cmd": "push", "data": "p" * 125, "opcode": PING}))  # a ping it answers
            await ws.send(json.dumps({"cmd": "disconnect", "args": [4002, "library bye"]}))
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed as closed:
                code, reason = closed.rcvd.code, closed.rcvd.reason
            return {"fd": fd, "echoed": echoed, "subprotocol": ws.subprotocol, "code": code, "reason": reason}

    result = asyncio.run(asyncio.wait_for(talk(), 30))
    assert result["echoed"] == b"library bytes" * 100 and result["subprotocol"] == "chat"
    assert (result["code"], result["reason"]) == (4002, "library bye")
    server.wait("close", fd=result["fd"])


# -- the handshake callback -------------------------------------------------------------------------
def _handshake_app(server, emit):
    command_app()(server, emit)

    def on_handshake(request, response):
        emit("handshake", fd=request.fd, status=server.get_client_info(request.fd)["websocket_status"],
             exist=server.exist(request.fd), pushed=server.push(request.fd, b"too early"), error=server.get_last_error())
        if request.server["request_uri"] == "/forbidden":
            response.status(403)
            response.end(b"go away")
            return False
        response.status(101)
        response.header("Upgrade", "websocket")
        response.header("Connection", "Upgrade")
        response.header("Sec-WebSocket-Accept", accept_key(request.header["sec-websocket-key"]))
        response.header("X-Accepted-By", "callback")
        response.end()
        return True

    server.on("handshake", on_handshake)


def test_the_handshake_callback_refuses_with_403_and_accepts_without_open(run_server, mode):
    handle = start_ws(run_server, mode, setup=_handshake_app)
    refused = WsClient(handle, path="/forbidden")
    assert refused.status == 403 and refused.read_body() == b"go away"
    assert refused.closed_by_server()
    shaking = handle.wait("handshake")
    assert shaking["status"] == 2 and shaking["exist"] is False  # handshaking: not a WebSocket yet
    assert shaking["pushed"] is False and shaking["error"] == ErrorCode.WEBSOCKET_BAD_CLIENT
    accepted = WsClient(handle, path="/ok")
    assert accepted.status == 101 and accepted.headers["x-accepted-by"] == "callback"
    fd = handle.wait("handshake")["fd"]
    accepted.command("status", fd=fd)
    status = handle.wait("status", fd=fd)
    assert status["exist"] is True and status["websocket_status"] == 3
    accepted.send(b"echo me")
    assert accepted.recv_message().data == b"echo me"
    assert not [e for e in handle.drain() if e["event"] == "open"]
    accepted.shutdown()
    refused.shutdown()
    assert handle.stop() == 0


# -- control frames delivered to on_message ---------------------------------------------------------
def test_open_frame_settings_deliver_close_ping_and_pong_frames(run_server, mode):
    handle = start_ws(run_server, mode, {"open_websocket_close_frame": True, "open_websocket_ping_frame": True,
                                         "open_websocket_pong_frame": True})
    client = WsClient(handle, read_fd=True)
    client.send_raw(frame(PING, b"ping data"))
    assert handle.wait("control", opcode=PING)["data"] == b"ping data".hex()
    client.send_raw(frame(PONG, b"pong data"))
    assert handle.wait("control", opcode=PONG)["data"] == b"pong data".hex()
    client.send(b"data after")  # no automatic pong came before the echo
    got = client.recv_message(skip_control=False)
    assert (got.opcode, got.data) == (BINARY, b"data after")
    client.send_raw(frame(CLOSE, close_payload(4010, "closing é".encode())))
    closing = handle.wait("control", opcode=CLOSE)
    assert closing["code"] == 4010 and closing["reason"] == "closing é"
    assert closing["data"] == close_payload(4010, "closing é".encode()).hex()
    assert client.expect_close().code == 4010  # delivered, and still answered and closed
    client.shutdown()
    handle.wait("close", fd=client.fd)
    assert handle.stop() == 0


def test_without_open_frame_settings_a_close_frame_closes_and_fires_close_only(run_server, mode):
    handle = start_ws(run_server, mode)
    client = WsClient(handle, read_fd=True)
    client.send_raw(frame(CLOSE, close_payload(4020, b"bye")))
    assert client.expect_close().code == 4020
    handle.wait("close", fd=client.fd)
    assert not [e for e in handle.drain() if e["event"] in ("control", "message")]
    assert handle.stop() == 0
