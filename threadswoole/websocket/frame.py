"""`Frame` and `CloseFrame` (Swoole\\WebSocket\\Frame / CloseFrame), and the static `pack` / `unpack`.

`pack`/`unpack` are what ``websocket.Server.pack`` / ``unpack`` call: one frame to bytes and
back, for use over any socket (api.md §9, §17 item 51).
"""

from __future__ import annotations

import errno
from typing import Literal

from threadswoole._context import set_error
from threadswoole.constants import (
    WEBSOCKET_CLOSE_NORMAL,
    WEBSOCKET_OPCODE_CLOSE,
    WEBSOCKET_OPCODE_TEXT,
)
from threadswoole.errors import ErrorCode
from threadswoole.protocol.websocket.frames import (
    CLOSE_NO_STATUS,
    CONTROL_OPCODES,
    KNOWN_OPCODES,
    MAX_CONTROL_PAYLOAD,
    apply_mask,
    encode_frame,
    random_mask_key,
)

__all__ = ["Frame", "CloseFrame", "pack", "unpack"]

Data = bytes | bytearray | memoryview | str


class Frame:
    """One WebSocket frame or message as ``on_message`` sees it (``data`` is always bytes)."""

    __slots__ = ("fd", "data", "opcode", "finish")

    def __init__(self, fd: int = 0, data: bytes = b"", opcode: int = WEBSOCKET_OPCODE_TEXT, finish: bool = True) -> None:
        self.fd = fd
        self.data = data
        self.opcode = opcode
        self.finish = finish

    @property
    def text(self) -> str:
        """`data` decoded as UTF-8 (text frames are always valid UTF-8)."""
        return self.data.decode("utf-8")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fd={self.fd}, opcode={self.opcode}, finish={self.finish}, data={self.data[:40]!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _fields(type(self)))

    __hash__ = None  # type: ignore[assignment]


class CloseFrame(Frame):
    """A close frame: ``code`` (1005 when none was sent) and ``reason``; ``data`` is the raw payload
    (2-byte code + reason), api.md §18.10."""

    __slots__ = ("code", "reason")

    def __init__(self, fd: int = 0, code: int = WEBSOCKET_CLOSE_NORMAL, reason: str = "", data: bytes | None = None) -> None:
        if data is None:
            data = b"" if code == CLOSE_NO_STATUS and not reason else code.to_bytes(2, "big") + reason.encode("utf-8")
        super().__init__(fd, data, WEBSOCKET_OPCODE_CLOSE, True)
        self.code = code
        self.reason = reason

    @classmethod
    def from_payload(cls, fd: int, payload: bytes) -> "CloseFrame":
        """Decode a close payload leniently (as `unpack` must: it judges no peer)."""
        if len(payload) < 2:
            return cls(fd, CLOSE_NO_STATUS, "", bytes(payload))
        reason = payload[2:].decode("utf-8", "replace")
        return cls(fd, int.from_bytes(payload[:2], "big"), reason, bytes(payload))

    def __repr__(self) -> str:
        return f"CloseFrame(fd={self.fd}, code={self.code}, reason={self.reason!r})"


def _fields(cls: type) -> tuple[str, ...]:
    return ("fd", "data", "opcode", "finish") + (("code", "reason") if issubclass(cls, CloseFrame) else ())


def _to_bytes(data: object) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes, bytearray, memoryview or str, not {type(data).__name__}")


def pack(data: Data | Frame, opcode: int = WEBSOCKET_OPCODE_TEXT, finish: bool = True, mask: bool = False) -> bytes:
    """One frame as bytes: `data` as the payload (a str is UTF-8 encoded; a `Frame` gives its own
    data, opcode and finish), `mask` for frames a client sends.

    Raises ValueError for an unknown opcode or a control frame over 125 bytes or not final,
    TypeError for a bad `data` type.
    """
    if isinstance(data, Frame):
        payload, opcode, finish = data.data, data.opcode, data.finish
    else:
        payload = _to_bytes(data)
    if type(opcode) is not int and not isinstance(opcode, int):
        raise TypeError(f"opcode must be an int, not {type(opcode).__name__}")
    if opcode not in KNOWN_OPCODES:
        raise ValueError(f"unknown WebSocket opcode {opcode!r}")
    if opcode in CONTROL_OPCODES:
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame payload is {len(payload)} bytes; at most 125 allowed")
        if not finish:
            raise ValueError("control frames cannot be fragmented")
    return encode_frame(int(opcode), payload, bool(finish), random_mask_key() if mask else None)


def unpack(data: bytes | bytearray | memoryview) -> Frame | Literal[False]:
    """Parse the one frame at the start of `data` into a `Frame` (`CloseFrame` for opcode 8).

    Returns False, recording the error, when `data` does not hold a whole frame
    (``errno.EINVAL``) or the frame has a reserved opcode (8502, WEBSOCKET_BAD_OPCODE). A masked
    frame is unmasked; compressed payloads (RSV1) are returned as they are.
    """
    view = bytes(data)
    n = len(view)
    if n < 2:
        return set_error(errno.EINVAL)
    b0, b1 = view[0], view[1]
    opcode = b0 & 0x0F
    if opcode not in KNOWN_OPCODES:
        return set_error(ErrorCode.WEBSOCKET_BAD_OPCODE)
    length = b1 & 0x7F
    pos = 2
    if length == 126:
        if n < 4:
            return set_error(errno.EINVAL)
        length, pos = int.from_bytes(view[2:4], "big"), 4
    elif length == 127:
        if n < 10:
            return set_error(errno.EINVAL)
        length, pos = int.from_bytes(view[2:10], "big"), 10
    mask_key = None
    if b1 & 0x80:
        if n < pos + 4:
            return set_error(errno.EINVAL)
        mask_key, pos = view[pos:pos + 4], pos + 4
    if n < pos + length:
        return set_error(errno.EINVAL)
    payload = view[pos:pos + length]
    if mask_key is not None:
        payload = apply_mask(payload, mask_key)
    if opcode == WEBSOCKET_OPCODE_CLOSE:
        return CloseFrame.from_payload(0, payload)
    return Frame(0, payload, opcode, bool(b0 & 0x80))
