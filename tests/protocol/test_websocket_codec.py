"""WebSocketCodec (RFC 6455 reader): events, replies, every protocol error, limits, round trips."""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Iterator

import pytest

from threadswoole.protocol.codec import EVENT_TYPES, ProtocolError, Reply
from threadswoole.protocol.websocket import (
    Close,
    Message,
    MessageEncoder,
    Ping,
    Pong,
    WebSocketCodec,
    close_frame,
    encode_frame,
)

pytestmark = pytest.mark.timeout(60)

MASK = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def cf(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False, mask: bytes | None = MASK) -> bytes:
    """A frame as a client sends it (masked)."""
    return encode_frame(opcode, payload, fin, mask, rsv1)


def norm(items: list[Any]) -> list[Any]:
    """Replies compare by value."""
    return [("reply", item.data, item.close) if isinstance(item, Reply) else item for item in items]


# -- house helper: every input is fed whole, byte by byte and split at every offset --------------
def _split_points(n: int) -> list[int]:
    if n <= 2048:
        return list(range(1, n))
    return sorted({*range(1, 200), *range(n - 200, n), *range(200, n - 200, 997)})


def _run(codec: WebSocketCodec, pieces: list[bytes]) -> tuple[list[Any], ProtocolError | None]:
    out: list[Any] = []
    for piece in pieces:
        try:
            out.extend(codec.feed(piece))
        except ProtocolError as err:
            out.extend(err.events)
            assert codec.failed and codec.buffered == 0, "a failed codec must release its buffers"
            with pytest.raises(ProtocolError):
                codec.feed(b"\x81\x80abcd")
            return out, err
    return out, None


def feed_ways(make: Callable[[], WebSocketCodec], data: bytes) -> Iterator[tuple[str, list[Any], ProtocolError | None, WebSocketCodec]]:
    ways = [("whole", [data]), ("bytewise", [data[i:i + 1] for i in range(len(data))])]
    ways += [(f"split@{i}", [data[:i], data[i:]]) for i in _split_points(len(data))]
    for way, pieces in ways:
        codec = make()
        out, err = _run(codec, pieces)
        yield way, out, err, codec


def check(make: Callable[[], WebSocketCodec], data: bytes, expected: list[Any], code: int | None = None) -> None:
    """Every way gives `expected`, then (with `code`) fails with a close frame carrying `code`."""
    for way, out, err, codec in feed_ways(make, data):
        assert norm(out) == norm(expected), way
        if code is None:
            assert err is None, (way, err)
        else:
            assert err is not None, way
            response = err.response
            assert response[0] == 0x88 and response[1] & 0x80 == 0, way  # unmasked close frame from a server
            assert int.from_bytes(response[2:4], "big") == code, (way, err)


server = WebSocketCodec


# -- good input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_single_frame_messages(size: int, opcode: int) -> None:
    payload = (b"x" if opcode == TEXT else os.urandom(1)) * size
    data = cf(opcode, payload)
    if size <= 1000:
        check(server, data, [Message(opcode, payload)])
    else:
        for pieces in ([data], [data[:3], data[3:9], data[9:]], [data[i:i + 4096] for i in range(0, len(data), 4096)]):
            assert _run(server(), pieces) == ([Message(opcode, payload)], None)


def test_messages_pipelined_in_one_feed() -> None:
    frames = [cf(TEXT, b"one"), cf(BINARY, b"\x00\xff"), cf(TEXT, b""), cf(BINARY, bytes(300))]
    expected = [Message(TEXT, b"one"), Message(BINARY, b"\x00\xff"), Message(TEXT, b""), Message(BINARY, bytes(300))]
    check(server, b"".join(frames), expected)


def test_fragmented_message_with_control_frames_between() -> None:
    data = (cf(TEXT, b"Hel", fin=False) + cf(PING, b"p1") + cf(CONT, b"", fin=False)
            + cf(PONG, b"x") + cf(CONT, "lo, κόσμε".encode(), fin=False) + cf(CONT, b"!"))
    check(server, data, [Reply(b"\x8a\x02p1"), Message(TEXT, "Hello, κόσμε!".encode())])


def test_text_split_inside_a_character_across_fragments() -> None:
    text = "κόσμε €𝄞".encode()
    for cut in range(1, len(text)):
        data = cf(TEXT, text[:cut], fin=False) + cf(CONT, text[cut:])
        assert _run(server(), [data]) == ([Message(TEXT, text)], None)


def test_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    check(server, cf(PING, b"") + cf(PING, bytes(range(125))),
          [Reply(b"\x8a\x00"), Reply(b"\x8a\x7d" + bytes(range(125)))])


def test_pong_is_dropped_unless_delivered() -> None:
    check(server, cf(PONG, b"unsolicited"), [])
    check(lambda: WebSocketCodec(deliver_pong=True), cf(PONG, b"x"), [Pong(b"x")])


def test_delivered_ping_is_not_answered() -> None:
    check(lambda: WebSocketCodec(deliver_ping=True), cf(PING, b"hb"), [Ping(b"hb")])


def test_close_is_echoed_and_closes() -> None:
    check(server, cf(CLOSE, b"\x03\xe8bye"), [Reply(b"\x88\x05\x03\xe8bye", close=True)])
    check(server, cf(CLOSE, b""), [Reply(b"\x88\x00", close=True)])


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes_are_echoed(code: int) -> None:  # Autobahn 7.7.*
    payload = code.to_bytes(2, "big")
    check(lambda: WebSocketCodec(deliver_close=True), cf(CLOSE, payload),
          [Close(code, ""), Reply(b"\x88\x02" + payload, close=True)])


def test_delivered_close_carries_code_and_reason() -> None:
    check(lambda: WebSocketCodec(deliver_close=True), cf(CLOSE, b"\x0f\xa0" + "ciao ☺".encode()),
          [Close(4000, "ciao ☺"), Reply(b"\x88" + bytes([2 + 8]) + b"\x0f\xa0" + "ciao ☺".encode(), close=True)])
    check(lambda: WebSocketCodec(deliver_close=True), cf(CLOSE), [Close(1005, ""), Reply(b"\x88\x00", close=True)])


def test_everything_after_the_close_frame_is_ignored() -> None:
    data = cf(TEXT, b"a") + cf(CLOSE, b"\x03\xe8") + cf(TEXT, b"b") + b"\xff\xff garbage"
    check(server, data, [Message(TEXT, b"a"), Reply(b"\x88\x02\x03\xe8", close=True)])
    codec = server()
    codec.feed(cf(CLOSE))
    assert codec.closed and codec.feed(cf(TEXT, b"late")) == []


def test_close_after_we_sent_ours_completes_without_an_echo() -> None:
    codec = WebSocketCodec()
    codec.mark_closing()
    assert norm(codec.feed(cf(CLOSE, b"\x03\xe8"))) == [("reply", b"", True)]


def test_empty_fragments_and_empty_message() -> None:
    data = cf(BINARY, b"", fin=False) + cf(CONT, b"", fin=False) + cf(CONT, b"")
    check(server, data, [Message(BINARY, b"")])


# -- bad input: each case is fed whole, byte by byte and split at every offset --------------------
BAD: list[tuple[str, bytes, int, list[Any]]] = [
    ("rsv2", bytes([0x81 | 0x20, 0x80]) + MASK, 1002, []),
    ("rsv3", bytes([0x82 | 0x10, 0x80]) + MASK, 1002, []),
    ("rsv1 without extension", cf(TEXT, b"x", rsv1=True), 1002, []),
    *[(f"reserved opcode {op:#x}", cf(op, b"x"), 1002, []) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
    ("unmasked client frame", cf(TEXT, b"hi", mask=None), 1002, []),
    ("fragmented ping", cf(PING, b"x", fin=False), 1002, []),
    ("fragmented close", cf(CLOSE, b"\x03\xe8", fin=False), 1002, []),
    ("ping over 125 bytes", cf(PING, bytes(126)), 1002, []),
    ("close over 125 bytes", cf(CLOSE, b"\x03\xe8" + b"*" * 124), 1002, []),
    ("close with a 1-byte payload", cf(CLOSE, b"\x03"), 1002, []),
    *[(f"close code {c}", cf(CLOSE, c.to_bytes(2, "big")), 1002, [])
      for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)],
    ("close reason not utf-8", cf(CLOSE, b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007, []),
    ("continuation without a message", cf(CONT, b"x"), 1002, []),
    ("text inside a fragmented text", cf(TEXT, b"a", fin=False) + cf(TEXT, b"b"), 1002, []),
    ("binary inside a fragmented text", cf(TEXT, b"a", fin=False) + cf(BINARY, b"b"), 1002, []),
    ("invalid utf-8", cf(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), 1007, []),
    ("utf-8 cut at the end", cf(TEXT, "€".encode()[:2]), 1007, []),
    ("overlong utf-8", cf(TEXT, b"\xc0\xaf"), 1007, []),
    ("code point over U+10FFFF", cf(TEXT, b"\xf4\x90\x80\x80"), 1007, []),
    ("64-bit length with the top bit", bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + MASK, 1002, []),
    ("64-bit length 2**64-1", bytes([0x82, 0xFF]) + b"\xff" * 8 + MASK, 1002, []),
    ("non-minimal 16-bit length", bytes([0x82, 0x80 | 126]) + (5).to_bytes(2, "big") + MASK + bytes(5), 1002, []),
    ("non-minimal 64-bit length", bytes([0x82, 0x80 | 127]) + (200).to_bytes(8, "big") + MASK + bytes(200), 1002, []),
    ("messages before the error are kept",
     cf(TEXT, b"ok") + cf(PING, b"p") + cf(7, b""), 1002, [Message(TEXT, b"ok"), Reply(b"\x8a\x01p")]),
]


@pytest.mark.parametrize("name,data,code,before", BAD, ids=[case[0] for case in BAD])
def test_bad_input_fails_with_the_right_close_code(name: str, data: bytes, code: int, before: list[Any]) -> None:
    check(server, data, before, code)


def test_client_side_rejects_masked_frames_and_answers_masked() -> None:
    client = lambda: WebSocketCodec(client_side=True)  # noqa: E731
    check(client, encode_frame(TEXT, b"hi"), [Message(TEXT, b"hi")])
    codec = client()
    (reply,) = codec.feed(encode_frame(PING, b"abc"))
    assert reply.data[0] == 0x8A and reply.data[1] == 0x80 | 3  # masked pong
    assert WebSocketCodec().feed(reply.data) == []  # a server reads it as a valid pong
    with pytest.raises(ProtocolError) as info:
        client().feed(cf(TEXT, b"masked"))
    assert info.value.response[1] & 0x80  # the client's own close frame is masked


def test_utf8_fails_fast_in_the_middle_of_a_fragmented_message() -> None:
    # Autobahn 6.4.1/6.4.2: the connection fails on the bad fragment, before the message ends.
    codec = server()
    assert codec.feed(cf(TEXT, "κόσμε".encode(), fin=False)) == []
    with pytest.raises(ProtocolError) as info:
        codec.feed(cf(CONT, b"\xf4\x90\x80\x80", fin=False))
    assert info.value.response[2:4] == (1007).to_bytes(2, "big")


@pytest.mark.parametrize("bad", [b"\xf4\x90", b"\xed\xa0", b"\xe0\x80", b"\xc0", b"\xff"])
def test_utf8_fails_fast_inside_one_frame(bad: bytes) -> None:
    # Autobahn 6.4.3/6.4.4: one frame sent in chunks; the bad bytes fail before the frame ends.
    frame = cf(TEXT, "κόσμε".encode() + bad + b"more text follows", fin=True)
    header = 6
    cut = header + len("κόσμε".encode()) + len(bad)
    codec = server()
    assert codec.feed(frame[:header + 4]) == []
    with pytest.raises(ProtocolError) as info:
        codec.feed(frame[header + 4:cut])
    assert info.value.response[2:4] == (1007).to_bytes(2, "big")


def test_bad_header_fails_before_its_payload_arrives() -> None:
    codec = server()
    with pytest.raises(ProtocolError):
        codec.feed(bytes([0x83, 0xFE]))  # reserved opcode; the extended length is not there yet


# -- limits ----------------------------------------------------------------------------------------
def test_message_at_the_limit_and_one_byte_over() -> None:
    limit = 1000
    make = lambda: WebSocketCodec(max_message_size=limit)  # noqa: E731
    check(make, cf(BINARY, bytes(limit)), [Message(BINARY, bytes(limit))])
    check(make, cf(BINARY, bytes(limit + 1)), [], 1009)
    parts = cf(BINARY, bytes(400), fin=False) + cf(CONT, bytes(400), fin=False)
    assert _run(make(), [parts + cf(CONT, bytes(200))]) == ([Message(BINARY, bytes(limit))], None)
    out, err = _run(make(), [parts + cf(CONT, bytes(201))])
    assert err is not None and err.reason == "too_large" and err.response[2:4] == b"\x03\xf1"


def test_oversized_header_fails_before_any_payload_is_buffered() -> None:
    codec = WebSocketCodec(max_message_size=1 << 20)
    header = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + MASK
    with pytest.raises(ProtocolError) as info:
        codec.feed(header)
    assert info.value.reason == "too_large" and codec.buffered == 0


def test_buffered_counts_partial_input() -> None:
    codec = server()
    frame = cf(BINARY, bytes(1000), fin=False)
    codec.feed(frame[:500])
    assert 0 < codec.buffered <= 500
    codec.feed(frame[500:])
    assert codec.buffered == 1000  # the open message
    codec.feed(cf(CONT, b""))
    assert codec.buffered == 0


def test_max_message_size_is_checked() -> None:
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ValueError):
            WebSocketCodec(max_message_size=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WebSocketCodec(deflate={"server_no_context_takeover": True})  # type: ignore[arg-type]


# -- round trips through MessageEncoder ----------------------------------------------------------
SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]


def _fragments(payload: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(payload) + 1), k=min(len(payload) + 1, rng.randint(0, 4))))
    edges = [0, *cuts, len(payload)]
    return [payload[a:b] for a, b in zip(edges, edges[1:])]


def _send_message(encoder: MessageEncoder, opcode: int, payload: bytes, rng: random.Random, pings: bool) -> bytes:
    pieces = _fragments(payload, rng)
    out = []
    for index, piece in enumerate(pieces):
        out.append(encoder.encode(opcode if index == 0 else CONT, piece, fin=index == len(pieces) - 1))
        if pings and index < len(pieces) - 1:
            out.append(encoder.encode(PING, b"between"))
    return b"".join(out)


def _chop(data: bytes, rng: random.Random) -> list[bytes]:
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 7, 100, 4096, 65536, len(data)])
        pieces.append(data[pos:pos + step])
        pos += step
    return pieces


@pytest.mark.parametrize("client_side_sends", [True, False], ids=["client->server", "server->client"])
def test_round_trip_sizes_fragments_and_masks(client_side_sends: bool) -> None:
    rng = random.Random(6455)
    encoder = MessageEncoder(client_side=client_side_sends)
    messages: list[tuple[int, bytes]] = []
    for size in SIZES:
        messages.append((BINARY, os.urandom(size)))
        messages.append((TEXT, ("é" * (size // 2) + "a" * (size % 2)).encode()))
    for _ in range(3):
        wire = b""
        for opcode, payload in messages:
            wire += _send_message(encoder, opcode, payload, rng, pings=True)
        reader = WebSocketCodec(client_side=not client_side_sends, max_message_size=2 << 20)
        out: list[Any] = []
        for piece in _chop(wire, rng):
            out.extend(reader.feed(piece))
        got = [(item.opcode, item.data) for item in out if isinstance(item, Message)]
        assert got == messages
        assert all(isinstance(item, Message) or isinstance(item, Reply) for item in out)
        assert reader.buffered == 0


def test_client_frames_are_masked_with_fresh_keys() -> None:
    encoder = MessageEncoder(client_side=True)
    a, b = encoder.encode(BINARY, bytes(16)), encoder.encode(BINARY, bytes(16))
    assert a[1] & 0x80 and b[1] & 0x80 and a[2:6] != b[2:6]
    assert MessageEncoder().encode(BINARY, b"x") == b"\x82\x01x"


def test_encoder_rejects_what_the_protocol_forbids() -> None:
    encoder = MessageEncoder()
    with pytest.raises(ValueError):
        encoder.encode(3, b"")
    with pytest.raises(ValueError):
        encoder.encode(PING, bytes(126))
    with pytest.raises(ValueError):
        encoder.encode(PING, b"", fin=False)
    with pytest.raises(ValueError):
        encoder.encode(CONT, b"orphan")
    # A data opcode inside an open message is sent as its continuation: the stream stays valid.
    wire = encoder.encode(TEXT, b"a", fin=False) + encoder.encode(TEXT, b"b")
    assert _run(server(), [_as_client(wire)]) == ([Message(TEXT, b"ab")], None)
    assert encoder.close(4000, "bye") == close_frame(4000, "bye")


def _as_client(wire: bytes) -> bytes:
    """Re-encode unmasked server frames as masked client frames (for feeding a server codec)."""
    frames, pos = [], 0
    while pos < len(wire):
        b0, b1 = wire[pos], wire[pos + 1] & 0x7F
        pos += 2
        if b1 == 126:
            b1, pos = int.from_bytes(wire[pos:pos + 2], "big"), pos + 2
        elif b1 == 127:
            b1, pos = int.from_bytes(wire[pos:pos + 8], "big"), pos + 8
        frames.append(encode_frame(b0 & 0x0F, wire[pos:pos + b1], bool(b0 & 0x80), MASK, bool(b0 & 0x40)))
        pos += b1
    return b"".join(frames)


# -- events cross to PROCESS workers as bytes ----------------------------------------------------
@pytest.mark.parametrize("event", [Message(TEXT, "κόσμε".encode()), Message(BINARY, os.urandom(70000)),
                                   Ping(b"p"), Pong(b""), Close(4000, "bye ☺"), Close(1005, "")])
def test_events_pack_and_unpack(event: Any) -> None:
    again = EVENT_TYPES[event.wire_id].unpack(event.pack())
    assert again == event and type(again) is type(event)
    assert {10, 11, 12, 13} <= set(EVENT_TYPES)


def test_close_event_data_is_the_raw_payload() -> None:
    assert Close(4000, "bye").data == b"\x0f\xa0bye"
    assert Close(1005, "").data == b""
