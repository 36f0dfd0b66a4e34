"""permessage-deflate (RFC 7692): negotiation, round trips against zlib and the client side, bombs."""

from __future__ import annotations

import os
import random
import tracemalloc
import zlib
from typing import Any

import pytest

from threadswoole.protocol.codec import ProtocolError, Reply
from threadswoole.protocol.websocket import DeflateParameters, Message, MessageEncoder, WebSocketCodec, encode_frame
from threadswoole.protocol.websocket.deflate import (
    Deflater,
    Inflater,
    MessageTooBig,
    accept_response,
    negotiate,
    offer,
    parse_extensions,
)

pytestmark = pytest.mark.timeout(60)

MASK = b"\x01\x02\x03\x04"
TEXT, BINARY, CONT, PING = 1, 2, 0, 9


def raw_deflate(data: bytes, wbits: int = 15) -> bytes:
    """What any RFC 7692 sender puts on the wire for one message (trailer removed)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def raw_inflate(data: bytes, d: Any = None) -> bytes:
    d = d or zlib.decompressobj(-15)
    return d.decompress(data + b"\x00\x00\xff\xff")


# -- negotiation -----------------------------------------------------------------------------------
P = DeflateParameters


@pytest.mark.parametrize("header,expected", [
    ("permessage-deflate", P()),
    ("permessage-deflate; client_max_window_bits", P()),
    ("permessage-deflate; client_max_window_bits=10", P(client_max_window_bits=10, client_max_window_bits_stated=True)),
    ("permessage-deflate; server_no_context_takeover", P(server_no_context_takeover=True)),
    ("permessage-deflate; client_no_context_takeover", P(client_no_context_takeover=True)),
    ("permessage-deflate; server_max_window_bits=9", P(server_max_window_bits=9)),
    ('permessage-deflate; server_max_window_bits="12"', P(server_max_window_bits=12)),
    ("PerMessage-Deflate; Server_No_Context_Takeover", P(server_no_context_takeover=True)),
    # Autobahn 13.5/13.7: an 8-bit server window is declined; the next offer is taken.
    ("permessage-deflate; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits,"
     " permessage-deflate; client_no_context_takeover; client_max_window_bits, permessage-deflate",
     P(client_no_context_takeover=True)),
    ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=15", P()),
    ("permessage-deflate; server_max_window_bits=8", None),
    ("permessage-deflate; server_max_window_bits", None),  # a value is required
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; server_max_window_bits=09", None),
    ("permessage-deflate; client_max_window_bits=7", None),
    ("permessage-deflate; server_no_context_takeover=1", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("permessage-deflate; unknown_param", None),
    ("x-webkit-deflate-frame", None),
    ("", None),
    (None, None),
    ('permessage-deflate; server_max_window_bits="12', None),  # unparsable header: no extension
])
def test_negotiate(header: str | None, expected: DeflateParameters | None) -> None:
    assert negotiate(header) == expected


def test_negotiate_without_context_takeover_is_swooles_answer() -> None:
    params = negotiate("permessage-deflate; client_max_window_bits", context_takeover=False)
    assert params is not None
    assert params.response_value() == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def test_response_value_round_trips_through_the_client_parser() -> None:
    for header in ("permessage-deflate", "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10",
                   "permessage-deflate; server_no_context_takeover; client_no_context_takeover"):
        params = negotiate(header)
        assert params is not None
        assert accept_response(params.response_value()) == params


@pytest.mark.parametrize("bad", [
    "permessage-deflate, permessage-deflate", "x-foo", "permessage-deflate; bogus",
    "permessage-deflate; client_max_window_bits=8", "permessage-deflate; server_max_window_bits=99",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
])
def test_client_rejects_bad_responses(bad: str) -> None:
    with pytest.raises(ValueError):
        accept_response(bad)


def test_offer_and_parse() -> None:
    assert offer() == "permessage-deflate; client_max_window_bits"
    text = offer(client_no_context_takeover=True, server_no_context_takeover=True, server_max_window_bits=10,
                 client_max_window_bits=11)
    assert parse_extensions(text) == [("permessage-deflate", [
        ("client_no_context_takeover", None), ("server_no_context_takeover", None),
        ("server_max_window_bits", "10"), ("client_max_window_bits", "11")])]
    with pytest.raises(ValueError):
        parse_extensions("bad name; x")


# -- compression contexts --------------------------------------------------------------------------
def test_deflater_output_inflates_with_plain_zlib() -> None:
    deflater = Deflater(no_context_takeover=False)
    d = zlib.decompressobj(-15)
    for message in [b"hello hello hello", b"", os.urandom(3000), b"hello hello hello" * 50]:
        assert raw_inflate(deflater.compress(message), d) == message


def test_empty_message_is_one_zero_byte() -> None:
    assert Deflater(False).compress(b"") == b"\x00"  # RFC 7692 §7.2.3.6


def test_context_takeover_makes_repeats_smaller() -> None:
    text = b"The quick brown fox jumps over the lazy dog. " * 20
    keep, reset = Deflater(False), Deflater(True)
    first = keep.compress(text)
    assert len(keep.compress(text)) < len(first) // 4  # refers back to the previous message
    assert len(reset.compress(text)) == len(reset.compress(text)) == len(first)


def test_window_bits_are_checked() -> None:
    with pytest.raises(ValueError):
        Deflater(False, 8)
    with pytest.raises(ValueError):
        DeflateParameters(server_max_window_bits=16)


@pytest.mark.parametrize("params", [
    P(), P(server_no_context_takeover=True, client_no_context_takeover=True),
    P(server_max_window_bits=9, client_max_window_bits=9), P(client_no_context_takeover=True),
], ids=["takeover", "no-takeover", "9-bit windows", "client-resets"])
def test_round_trip_both_directions(params: DeflateParameters) -> None:
    rng = random.Random(7692)
    corpus = [b"", b"a", b"{\"json\": [1, 2, 3]}" * 40, os.urandom(5000), ("τέλος " * 3000).encode(), bytes(70000)]
    for client_side_sends in (True, False):
        encoder = MessageEncoder(params, client_side=client_side_sends)
        reader = WebSocketCodec(deflate=params, client_side=not client_side_sends, max_message_size=1 << 20)
        wire = []
        expected = []
        for _ in range(3):
            for payload in corpus:
                opcode = TEXT if _is_text(payload) else BINARY
                expected.append((opcode, payload))
                if len(payload) > 10 and rng.random() < 0.5:  # fragmented compressed message
                    cut = rng.randrange(1, len(payload))
                    wire.append(encoder.encode(opcode, payload[:cut], fin=False))
                    wire.append(encoder.encode(PING, b"!"))
                    wire.append(encoder.encode(CONT, payload[cut:]))
                else:
                    wire.append(encoder.encode(opcode, payload))
        data = b"".join(wire)
        out: list[Any] = []
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 13, 1000, 65536])
            out.extend(reader.feed(data[pos:pos + step]))
            pos += step
        assert [(m.opcode, m.data) for m in out if isinstance(m, Message)] == expected
        assert any(isinstance(m, Reply) for m in out)


def _is_text(data: bytes) -> bool:
    try:
        data.decode()
        return True
    except UnicodeDecodeError:
        return False


def test_compressed_messages_from_zlib_are_read() -> None:
    params = P()
    codec = WebSocketCodec(deflate=params)
    msgs = [b"first message " * 10, b"second", b""]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = []
    for m in msgs:
        body = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        out += codec.feed(encode_frame(TEXT, body[:-4], True, MASK, rsv1=True))
    assert out == [Message(TEXT, m) for m in msgs]
    # An uncompressed message (RSV1 clear) on a deflate connection is fine too.
    assert codec.feed(encode_frame(BINARY, b"plain", True, MASK)) == [Message(BINARY, b"plain")]


def test_a_message_ended_with_a_bfinal_block_resets_the_context() -> None:
    codec = WebSocketCodec(deflate=P())
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(b"final block") + c.flush(zlib.Z_FINISH)  # BFINAL=1 (RFC 7692 §7.2.3.4)
    assert codec.feed(encode_frame(TEXT, body, True, MASK, rsv1=True)) == [Message(TEXT, b"final block")]
    assert codec.feed(encode_frame(TEXT, raw_deflate(b"next"), True, MASK, rsv1=True)) == [Message(TEXT, b"next")]


def _expect_close(codec: WebSocketCodec, data: bytes, code: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        for i in range(0, len(data), 50):
            codec.feed(data[i:i + 50])
    assert info.value.response[2:4] == code.to_bytes(2, "big"), info.value
    return info.value


def test_bad_compressed_data_is_1007() -> None:
    _expect_close(WebSocketCodec(deflate=P()), encode_frame(BINARY, b"\xff\xff\xff\xff garbage", True, MASK, True), 1007)


def test_invalid_utf8_inside_compressed_text_is_1007() -> None:
    body = raw_deflate("κόσμε".encode() + b"\xed\xa0\x80")
    _expect_close(WebSocketCodec(deflate=P()), encode_frame(TEXT, body, True, MASK, True), 1007)


def test_rsv1_rules_with_deflate() -> None:
    _expect_close(WebSocketCodec(deflate=P()), encode_frame(PING, b"", True, MASK, True), 1002)
    frames = encode_frame(TEXT, raw_deflate(b"ab")[:1], False, MASK, True) + encode_frame(CONT, b"", True, MASK, True)
    _expect_close(WebSocketCodec(deflate=P()), frames, 1002)


def test_inflated_size_at_the_limit_and_one_byte_over() -> None:
    limit = 10000
    ok = encode_frame(BINARY, raw_deflate(bytes(limit)), True, MASK, True)
    over = encode_frame(BINARY, raw_deflate(bytes(limit + 1)), True, MASK, True)
    assert WebSocketCodec(deflate=P(), max_message_size=limit).feed(ok) == [Message(BINARY, bytes(limit))]
    _expect_close(WebSocketCodec(deflate=P(), max_message_size=limit), over, 1009)
    # Over the limit only across fragments.
    half = zlib.compressobj(6, zlib.DEFLATED, -15)
    a = half.compress(bytes(6000)) + half.flush(zlib.Z_SYNC_FLUSH)
    b = half.compress(bytes(4001)) + half.flush(zlib.Z_SYNC_FLUSH)
    frames = encode_frame(BINARY, a, False, MASK, True) + encode_frame(CONT, b[:-4], True, MASK)
    _expect_close(WebSocketCodec(deflate=P(), max_message_size=limit), frames, 1009)


def test_zip_bomb_is_stopped_without_inflating_it() -> None:
    bomb = raw_deflate(bytes(64 << 20))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 100_000
    codec = WebSocketCodec(deflate=P(), max_message_size=1 << 20)
    frame = encode_frame(BINARY, bomb, True, MASK, True)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            codec.feed(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too_large"
    assert peak < 8 << 20, f"peak {peak} bytes: the bomb was inflated"


def test_inflater_limit_is_exact() -> None:
    inflater = Inflater(no_context_takeover=True)
    assert inflater.inflate(raw_deflate(b"x" * 100), 100) + inflater.finish(0) == b"x" * 100
    with pytest.raises(MessageTooBig):
        Inflater(True).inflate(raw_deflate(b"x" * 101), 100)
