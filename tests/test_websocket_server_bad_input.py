"""websocket.Server end to end, bad input in every mode (issue 13 "Bad input"): each protocol
violation closes that connection with the right close code, is counted in
stats()["protocol_error_count"], and a bystander connection is still served; a failed
handshake gets HTTP 400; a frame header announcing more than package_max_length is refused
(1009) before anything is buffered. One server per mode for the module."""

from __future__ import annotations

import struct
import zlib

import pytest

from websocket_server_helpers import (  # fresh_events: an autouse fixture
    fresh_events,  # noqa: F401
    BINARY, CLOSE, PING, PONG, TEXT, WsClient, close_payload, command_app, frame, module_ws_server, settled,
    stats_of, tree_rss,
)

pytestmark = pytest.mark.timeout(60)
MAX = 64 * 1024
MIB = 1024 * 1024

server = module_ws_server(command_app(), {"worker_num": 1, "package_max_length": MAX, "websocket_compression": True})

PROTOCOL, INVALID, TOO_BIG = 1002, 1007, 1009
VIOLATIONS = {
    "unmasked-client-frame": (frame(BINARY, b"plain", mask=False), PROTOCOL),
    "rsv1-without-extension": (frame(BINARY, b"x", rsv=4), PROTOCOL),
    "rsv2": (frame(TEXT, b"x", rsv=2), PROTOCOL),
    "rsv3-on-a-ping": (frame(PING, b"x", rsv=1), PROTOCOL),
    "reserved-data-opcode-3": (frame(3, b"x"), PROTOCOL),
    "reserved-control-opcode-11": (frame(11, b"x"), PROTOCOL),
    "ping-over-125-bytes": (frame(PING, b"p" * 126), PROTOCOL),
    "fragmented-ping": (frame(PING, b"p", fin=False), PROTOCOL),
    "fragmented-close": (frame(CLOSE, close_payload(1000), fin=False), PROTOCOL),
    "continuation-without-start": (frame(0, b"orphan"), PROTOCOL),
    "new-message-inside-a-fragmented-one": (frame(TEXT, b"a", fin=False) + frame(BINARY, b"b"), PROTOCOL),
    "invalid-utf8-text": (frame(TEXT, b"caf\xc3"), INVALID),
    "overlong-utf8-text": (frame(TEXT, b"\xc0\xaf"), INVALID),
    "surrogate-in-utf8-text": (frame(TEXT, b"\xed\xa0\x80"), INVALID),
    "invalid-utf8-in-a-fragment-fails-fast": (frame(TEXT, b"ok \xff", fin=False), INVALID),
    "invalid-utf8-close-reason": (frame(CLOSE, close_payload(1000, b"\xff\xfe")), INVALID),
    "close-code-999": (frame(CLOSE, close_payload(999)), PROTOCOL),
    "close-code-1005": (frame(CLOSE, close_payload(1005)), PROTOCOL),
    "close-code-1006": (frame(CLOSE, close_payload(1006)), PROTOCOL),
    "close-code-5000": (frame(CLOSE, close_payload(5000)), PROTOCOL),
    "one-byte-close-payload": (frame(CLOSE, b"\x03"), PROTOCOL),
    "length-with-the-top-bit-set": (frame(BINARY, b"", length=1 << 63), PROTOCOL),
    "length-over-package-max-length": (frame(BINARY, b"", length=MAX + 1), TOO_BIG),
    "length-of-2-to-the-62": (frame(BINARY, b"", length=1 << 62), TOO_BIG),
    "fragments-adding-up-over-package-max-length": (frame(BINARY, b"a" * (MAX // 2 + 1), fin=False)
                                                    + frame(0, b"b" * (MAX // 2 + 1)), TOO_BIG),
}


@pytest.fixture
def bystander(server):
    client = WsClient(server, read_fd=True)
    yield client
    client.send(b"still here")  # the violation next door disturbed nothing
    assert client.recv_message().data == b"still here"
    client.shutdown()


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_a_protocol_violation_closes_that_connection_with_its_code(server, bystander, name):
    data, code = VIOLATIONS[name]
    before = stats_of(server, bystander)["protocol_error_count"]
    client = WsClient(server, read_fd=True)
    client.send(b"before")  # what came before the violation is answered first
    assert client.recv_message().data == b"before"
    client.send_raw(data)
    closing = client.expect_close()
    assert closing.code == code, (name, closing)
    server.wait("close", fd=client.fd)
    after = settled(server, bystander, lambda s: s["protocol_error_count"] > before)
    assert after["protocol_error_count"] == before + 1
    client.shutdown()


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


COMPRESSED_VIOLATIONS = {
    "inflates-over-package-max-length": (frame(BINARY, deflated(b"\0" * (16 * MIB)), rsv=4), TOO_BIG),
    "not-deflate-data": (frame(BINARY, b"\xff\xfe\xfd\xfc not deflate", rsv=4), INVALID),
    "rsv1-on-a-continuation": (frame(BINARY, deflated(b"a"), rsv=4, fin=False) + frame(0, b"b", rsv=4), PROTOCOL),
    "rsv1-on-a-ping": (frame(PING, b"p", rsv=4), PROTOCOL),
    "inflated-text-not-utf8": (frame(TEXT, deflated(b"ok \xff"), rsv=4), INVALID),
}


@pytest.mark.parametrize("name", list(COMPRESSED_VIOLATIONS))
def test_a_violation_on_a_compressing_connection_closes_it_with_its_code(server, bystander, name):
    data, code = COMPRESSED_VIOLATIONS[name]
    rss_before = tree_rss(server)
    client = WsClient(server, compress=True, read_fd=True)
    assert client.deflate is not None
    client.send(b"before " * 100)
    assert client.recv_message().data == b"before " * 100
    client.send_raw(data)
    assert client.expect_close().code == code, name
    server.wait("close", fd=client.fd)
    assert tree_rss(server) - rss_before < 32 * MIB  # the 16 MiB bomb was never inflated whole
    client.shutdown()


def test_what_follows_a_violation_in_the_same_write_is_not_delivered(server, bystander):
    client = WsClient(server, read_fd=True)
    client.send_raw(frame(BINARY, b"first") + frame(3, b"bad") + frame(BINARY, b"never"))
    assert client.recv_message().data == b"first"
    assert client.expect_close().code == PROTOCOL
    server.wait("close", fd=client.fd)
    sizes = [e["size"] for e in server.drain() if e["event"] == "message" and e["fd"] == client.fd]
    assert sizes == [5]
    client.shutdown()


def test_a_huge_announced_frame_with_its_payload_streaming_is_refused_without_buffering(server, bystander):
    rss_before = tree_rss(server)
    client = WsClient(server, read_fd=True)
    client.send_raw(frame(BINARY, b"", length=1 << 40))
    try:
        for _ in range(64):  # 64 MiB of "payload" after the header, as long as the server takes it
            client.send_raw(b"\0" * MIB)
    except OSError:
        pass  # the server closed it: what we expect
    assert client.expect_close().code == TOO_BIG
    assert tree_rss(server) - rss_before < 32 * MIB
    client.shutdown()


def test_a_message_of_exactly_package_max_length_is_accepted(server, bystander):
    client = WsClient(server, read_fd=True)
    client.send(b"m" * MAX)
    assert client.recv_message().data == b"m" * MAX
    client.shutdown()


# -- the handshake ----------------------------------------------------------------------------------
BAD_HANDSHAKES = {
    "short-key": {"key": "short"},
    "key-of-15-bytes": {"key": "MTIzNDU2Nzg5MDEyMzQ1"},
    "key-not-base64": {"key": "!!!!!!!!!!!!!!!!!!!!!A=="},
    "empty-key": {"key": ""},
    "version-8": {"version": "8"},
    "version-missing-value": {"version": ""},
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
def test_a_bad_handshake_gets_400_and_closes(server, bystander, name):
    client = WsClient(server, handshake=False)
    client.handshake(**BAD_HANDSHAKES[name])
    assert client.status == 400, name
    if name.startswith("version"):
        assert client.headers.get("sec-websocket-version") == "13"
    assert client.closed_by_server()
    assert not [e for e in server.drain() if e["event"] == "open" and e["fd"] != bystander.fd]
    client.shutdown()


def test_a_handshake_without_a_key_or_with_post_is_refused(server, bystander):
    raw = WsClient(server, handshake=False)
    raw.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert raw.read_head().startswith(b"HTTP/1.1 400")
    raw.shutdown()
    post = WsClient(server, handshake=False)
    post.send_raw(b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
    assert post.read_head().split(b" ")[1] in (b"400", b"405")
    post.shutdown()


def test_frames_pipelined_after_the_upgrade_request_are_served_after_open(server):
    client = WsClient(server, handshake=False)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    client.send_raw(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
                    + frame(BINARY, b"early one") + frame(PING, b"early ping") + frame(TEXT, b"early two"))
    assert client.read_head().startswith(b"HTTP/1.1 101")
    received = [client.recv_frame() for _ in range(4)]
    data = [(f.opcode, f.data) for f in received if f.opcode != PONG]
    assert data[0][0] == TEXT and b'"fd"' in data[0][1]  # open's push comes before the echoes
    assert data[1:] == [(BINARY, b"early one"), (TEXT, b"early two")]
    # the automatic pong is the reactor's, the echoes a worker's: in PROCESS mode it may overtake them
    assert [(f.opcode, f.data) for f in received if f.opcode == PONG] == [(PONG, b"early ping")]
    client.shutdown()


def test_a_close_frame_without_a_code_is_answered_with_an_empty_close(server):
    client = WsClient(server, read_fd=True)
    client.close(None)
    closing = client.expect_close()
    assert closing.code in (1000, 1005) and closing.data in (b"", struct.pack("!H", 1000))
    client.shutdown()
