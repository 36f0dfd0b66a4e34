"""The pure frame functions: masking, frame headers, close payloads, close codes, UTF-8 validator."""

from __future__ import annotations

import os

import pytest

from threadswoole.protocol.websocket import apply_mask, close_frame, encode_frame, is_valid_close_code, parse_close_payload
from threadswoole.protocol.websocket.frames import CloseFormatError, close_payload
from threadswoole.protocol.websocket.utf8 import Utf8Validator, is_utf8

pytestmark = pytest.mark.timeout(30)


def naive_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 63, 64, 511, 512, 513, 4096, 65537])
def test_apply_mask_matches_the_definition(size: int) -> None:
    data, key = os.urandom(size), os.urandom(4)
    assert apply_mask(data, key) == naive_mask(data, key)
    assert apply_mask(bytearray(data), key) == apply_mask(memoryview(data), key) == naive_mask(data, key)
    assert apply_mask(apply_mask(data, key), key) == data


@pytest.mark.parametrize("size,header", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_encode_frame_uses_the_minimal_length_form(size: int, header: int) -> None:
    frame = encode_frame(2, bytes(size))
    assert len(frame) == header + size and frame[0] == 0x82
    masked = encode_frame(2, bytes(size), mask_key=b"abcd")
    assert len(masked) == header + 4 + size and masked[1] & 0x80
    assert masked[header:header + 4] == b"abcd" and masked[header + 4:] == naive_mask(bytes(size), b"abcd")


def test_encode_frame_bits() -> None:
    assert encode_frame(1, b"x", fin=False) == b"\x01\x01x"
    assert encode_frame(1, b"x", rsv1=True) == b"\xc1\x01x"
    assert encode_frame(9, b"") == b"\x89\x00"
    with pytest.raises(ValueError):
        encode_frame(1, b"x", mask_key=b"abc")


def test_rfc_6455_examples() -> None:  # §5.7
    assert encode_frame(1, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert encode_frame(1, b"Hello", mask_key=bytes.fromhex("37fa213d")) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(1, b"Hel", fin=False) + encode_frame(0, b"lo") == bytes.fromhex("010348656c80026c6f")
    assert encode_frame(9, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert encode_frame(2, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert encode_frame(2, bytes(65536))[:10] == bytes.fromhex("827f0000000000010000")


def test_close_payload_and_parse() -> None:
    assert close_payload(1000, "") == b"\x03\xe8"
    assert close_frame(4000, "bye") == b"\x88\x05\x0f\xa0bye"
    assert parse_close_payload(b"\x0f\xa0bye") == (4000, "bye")
    assert parse_close_payload(b"") == (1005, "")
    with pytest.raises(ValueError):
        close_payload(1000, "x" * 124)
    assert len(close_payload(1000, "x" * 123)) == 125
    with pytest.raises(CloseFormatError) as info:
        parse_close_payload(b"\x03")
    assert info.value.code == 1002
    with pytest.raises(CloseFormatError) as info:
        parse_close_payload(b"\x03\xe8\xff")
    assert info.value.code == 1007


def test_valid_close_codes() -> None:
    valid = {code for code in range(0, 70000) if is_valid_close_code(code)}
    assert valid == {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}


@pytest.mark.parametrize("text", ["", "ascii", "κόσμε", "€𝄞\U0010ffff", "\ud7ff\ue000"])
def test_utf8_validator_accepts_valid_text_split_anywhere(text: str) -> None:
    data = text.encode("utf-8")
    for cut in range(len(data) + 1):
        validator = Utf8Validator()
        assert validator.feed(data[:cut]) and validator.feed(data[cut:]) and validator.finish()
    assert is_utf8(data)


@pytest.mark.parametrize("bad,fails_at", [
    (b"\xc0\xaf", 1), (b"\xe0\x80\xaf", 2), (b"\xed\xa0\x80", 2), (b"\xed\xbf\xbf", 2),
    (b"\xf4\x90\x80\x80", 2), (b"\xf5", 1), (b"\xff", 1), (b"\x80", 1), (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 13),
])
def test_utf8_validator_fails_on_the_first_impossible_byte(bad: bytes, fails_at: int) -> None:
    for n in range(len(bad) + 1):
        validator = Utf8Validator()
        assert all(validator.feed(bad[i:i + 1]) for i in range(n)) is (n < fails_at), n
    assert not is_utf8(bad)


def test_utf8_validator_finish_rejects_a_cut_character() -> None:
    validator = Utf8Validator()
    assert validator.feed("€".encode()[:2]) and not validator.finish()
