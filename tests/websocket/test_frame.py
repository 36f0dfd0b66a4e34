"""threadswoole.websocket: Frame, CloseFrame, pack, unpack (api.md §9, §17 item 51, §18.10)."""

from __future__ import annotations

import errno

import pytest

from threadswoole import get_last_error
from threadswoole.constants import (
    WEBSOCKET_CLOSE_NORMAL,
    WEBSOCKET_OPCODE_BINARY,
    WEBSOCKET_OPCODE_CLOSE,
    WEBSOCKET_OPCODE_CONTINUATION,
    WEBSOCKET_OPCODE_PING,
    WEBSOCKET_OPCODE_TEXT,
)
from threadswoole.errors import ErrorCode
from threadswoole.protocol.websocket import WebSocketCodec, Message
from threadswoole.websocket import CloseFrame, Frame, pack, unpack

pytestmark = pytest.mark.timeout(30)


def test_pack_unpack_round_trip_item_51() -> None:
    frame = unpack(pack(b"hi"))
    assert isinstance(frame, Frame) and not isinstance(frame, CloseFrame)
    assert frame.data == b"hi" and frame.opcode == WEBSOCKET_OPCODE_TEXT and frame.finish is True
    assert frame.text == "hi" and type(frame.data) is bytes


def test_unpack_of_one_byte_is_false() -> None:
    assert unpack(b"\x00") is False
    assert get_last_error() == errno.EINVAL


@pytest.mark.parametrize("data", [b"", b"\x81", b"\x81\x05hi", b"\x81\xfe\x00", b"\x81\x85ab", b"\x82\x7f" + bytes(7)])
def test_unpack_incomplete_frames_is_false(data: bytes) -> None:
    assert unpack(data) is False


def test_unpack_reserved_opcode_is_false_with_8502() -> None:
    assert unpack(b"\x83\x00") is False
    assert get_last_error() == ErrorCode.WEBSOCKET_BAD_OPCODE == 8502


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("mask", [False, True])
def test_pack_sizes_masks_and_opcodes(size: int, mask: bool) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    raw = pack(payload, WEBSOCKET_OPCODE_BINARY, False, mask)
    assert bool(raw[1] & 0x80) is mask and raw[0] == WEBSOCKET_OPCODE_BINARY  # FIN clear
    frame = unpack(raw)
    assert frame and frame.data == payload and frame.opcode == WEBSOCKET_OPCODE_BINARY and frame.finish is False


def test_pack_takes_str_bytearray_memoryview_and_frames() -> None:
    assert unpack(pack("κόσμε")).data == "κόσμε".encode()  # type: ignore[union-attr]
    assert pack(bytearray(b"ab")) == pack(memoryview(b"ab")) == pack(b"ab") == b"\x81\x02ab"
    assert pack(Frame(data=b"x", opcode=WEBSOCKET_OPCODE_BINARY)) == b"\x82\x01x"
    with pytest.raises(TypeError):
        pack(123)  # type: ignore[arg-type]


def test_pack_rejects_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        pack(b"x", opcode=3)
    with pytest.raises(ValueError):
        pack(bytes(126), opcode=WEBSOCKET_OPCODE_PING)
    with pytest.raises(ValueError):
        pack(b"", opcode=WEBSOCKET_OPCODE_PING, finish=False)
    assert unpack(pack(b"", WEBSOCKET_OPCODE_CONTINUATION)).opcode == 0  # type: ignore[union-attr]


def test_masked_pack_is_read_by_the_server_codec() -> None:
    assert WebSocketCodec().feed(pack(b"payload", WEBSOCKET_OPCODE_BINARY, mask=True)) == [
        Message(WEBSOCKET_OPCODE_BINARY, b"payload")]


def test_close_frame_data_code_and_reason_item_18_10() -> None:
    frame = CloseFrame(7, 4000, "bye")
    assert frame.opcode == WEBSOCKET_OPCODE_CLOSE and frame.data == b"\x0f\xa0bye" and frame.fd == 7
    again = unpack(pack(frame))
    assert isinstance(again, CloseFrame) and (again.code, again.reason, again.data) == (4000, "bye", b"\x0f\xa0bye")
    assert CloseFrame().code == WEBSOCKET_CLOSE_NORMAL
    empty = unpack(b"\x88\x00")
    assert isinstance(empty, CloseFrame) and empty.code == 1005 and empty.data == b""


def test_frame_repr_and_equality() -> None:
    assert Frame(1, b"a") == Frame(1, b"a") != Frame(2, b"a")
    assert "opcode=1" in repr(Frame(1, b"a")) and "4000" in repr(CloseFrame(1, 4000))
