"""Differential tests against independent implementations, skipped when they are not installed.

wsproto and websockets are never dependencies of threadswoole; to run these, install them in a
throw-away virtualenv (``pip install wsproto websockets pytest pytest-timeout``) and run this
file with that interpreter and ``PYTHONPATH=<worktree>``.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from threadswoole.protocol.codec import ProtocolError, Reply
from threadswoole.protocol.websocket import Message, MessageEncoder, WebSocketCodec, encode_frame
from threadswoole.protocol.websocket.handshake import server_handshake

pytestmark = pytest.mark.timeout(60)

MASK = b"\x11\x22\x33\x44"
CORPUS = [b"", b"a", "κόσμε €𝄞".encode(), os.urandom(125), os.urandom(126), os.urandom(65536),
          ('{"k": "' + "v" * 5000 + '"}').encode(), bytes(200000)]


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_head(raw: bytes) -> tuple[str, dict[str, str]]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return head[0], headers


# -- websockets (sans-IO protocol objects) ---------------------------------------------------------
try:
    from websockets.client import ClientProtocol
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    from websockets.frames import Opcode
    from websockets.uri import parse_uri
    HAVE_WEBSOCKETS = True
except ImportError:
    HAVE_WEBSOCKETS = False

needs_websockets = pytest.mark.skipif(not HAVE_WEBSOCKETS, reason="websockets not installed (differential test)")


def _websockets_client(deflate: dict[str, Any] | None) -> tuple[Any, WebSocketCodec, MessageEncoder]:
    extensions = [ClientPerMessageDeflateFactory(**deflate)] if deflate is not None else None
    client = ClientProtocol(parse_uri("ws://example.com/chat"), extensions=extensions, subprotocols=["chat", "v2"],
                            max_size=None)
    client.send_request(client.connect())
    request = b"".join(client.data_to_send())
    line, headers = _parse_head(request)
    assert line == "GET /chat HTTP/1.1"
    shake = server_handshake("GET", headers, subprotocol="v2", compression=deflate is not None)
    client.receive_data(shake.response)
    (response,) = client.events_received()
    assert client.handshake_exc is None, client.handshake_exc
    assert client.subprotocol == "v2"
    # An 8-bit server window cannot be honoured with zlib: the offer is declined (deflate.py).
    accepted = deflate is not None and deflate.get("server_max_window_bits") != 8
    assert (shake.deflate is not None) == accepted
    codec = WebSocketCodec(deflate=shake.deflate, max_message_size=1 << 20)
    return client, codec, MessageEncoder(shake.deflate)


@needs_websockets
@pytest.mark.parametrize("deflate", [
    None, {}, {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 10, "client_max_window_bits": 9}, {"server_max_window_bits": 8},
], ids=["plain", "deflate", "no-takeover", "small-windows", "server-8-bits-declined"])
def test_websockets_client_against_our_server_side(deflate: dict[str, Any] | None) -> None:
    client, codec, encoder = _websockets_client(deflate)
    rng = random.Random(1)
    expected = []
    for payload in CORPUS * 2:
        text = _is_text(payload)
        if text:
            client.send_text(payload, fin=True)
        else:
            cut = rng.randrange(len(payload) + 1)
            client.send_binary(payload[:cut], fin=False)
            client.send_ping(b"between")
            client.send_continuation(payload[cut:], fin=True)
        expected.append((1 if text else 2, payload))
    wire = b"".join(client.data_to_send())
    out: list[Any] = []
    for i in range(0, len(wire), 1000):
        out.extend(codec.feed(wire[i:i + 1000]))
    assert [(m.opcode, m.data) for m in out if isinstance(m, Message)] == expected
    pongs = b"".join(r.data for r in out if isinstance(r, Reply))
    # Our answers (pongs), then our messages, read by the websockets client.
    replies = pongs + b"".join(encoder.encode(op, data) for op, data in expected)
    replies += encoder.encode(1, "frag".encode(), fin=False) + encoder.encode(0, "mented".encode())
    client.receive_data(replies)
    frames = client.events_received()
    assert client.parser_exc is None, client.parser_exc
    assert sum(1 for f in frames if f.opcode == Opcode.PONG) == sum(1 for op, _ in expected if op == 2)
    messages, current = [], b""
    for frame in frames:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            current += frame.data
            if frame.fin:
                messages.append(current)
                current = b""
    assert messages == [data for _, data in expected] + [b"fragmented"]
    client.send_close(4000, "bye")
    (reply,) = codec.feed(b"".join(client.data_to_send()))
    assert reply.close and reply.data == b"\x88\x05\x0f\xa0bye"


# -- wsproto (a second independent reader) ---------------------------------------------------------
try:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage, CloseConnection, TextMessage
    HAVE_WSPROTO = True
except ImportError:
    HAVE_WSPROTO = False

needs_wsproto = pytest.mark.skipif(not HAVE_WSPROTO, reason="wsproto not installed (differential test)")


def _wsproto_events(data: bytes, client: bool) -> list[Any]:
    conn = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
    conn.receive_data(data)
    return list(conn.events())


@needs_wsproto
def test_wsproto_reads_what_our_encoder_writes() -> None:
    encoder = MessageEncoder()
    for payload in CORPUS:
        events = _wsproto_events(encoder.encode(1 if _is_text(payload) else 2, payload), client=True)
        data = b"".join(e.data.encode() if isinstance(e, TextMessage) else e.data for e in events)
        assert data == payload


@needs_wsproto
@pytest.mark.parametrize("frame", [
    bytes([0xA1, 0x80]) + MASK, encode_frame(3, b"x", True, MASK), encode_frame(9, b"x", False, MASK),
    encode_frame(9, bytes(126), True, MASK), encode_frame(0, b"x", True, MASK),
    encode_frame(1, b"a", False, MASK) + encode_frame(2, b"b", True, MASK),
    encode_frame(1, b"\xed\xa0\x80", True, MASK), encode_frame(8, b"\x03", True, MASK),
    encode_frame(8, (1005).to_bytes(2, "big"), True, MASK), encode_frame(8, b"\x03\xe8\xff", True, MASK),
    encode_frame(1, b"x", True, MASK, rsv1=True), encode_frame(1, b"unmasked"),
])
def test_wsproto_and_we_fail_the_same_bad_frames_with_the_same_code(frame: bytes) -> None:
    events = _wsproto_events(frame, client=False)
    theirs = [e.code for e in events if isinstance(e, CloseConnection)]
    with pytest.raises(ProtocolError) as info:
        WebSocketCodec().feed(frame)
    ours = int.from_bytes(info.value.response[2:4], "big")
    assert theirs == [ours]
    # (wsproto streams fragments as they come; no message may have been completed)
    assert not any(isinstance(e, (TextMessage, BytesMessage)) and e.message_finished for e in events)
