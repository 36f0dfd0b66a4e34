"""What a `WebSocketCodec` hands to the dispatcher: whole messages and delivered control frames.

Wire ids 10..19 belong to WebSocket (`codec.register_event`). `pack`/`unpack` are one
`marshal` call each, so PROCESS mode carries an event to a worker without parsing it again.
"""

from __future__ import annotations

import marshal

from threadswoole.protocol.codec import Event, register_event

__all__ = ["Message", "Ping", "Pong", "Close"]


@register_event
class Message(Event):
    """A whole data message: `opcode` 1 (text, UTF-8 checked) or 2 (binary); `data` already
    reassembled from its fragments and inflated."""

    __slots__ = ("opcode", "data")
    wire_id = 10

    def __init__(self, opcode: int, data: bytes) -> None:
        self.opcode = opcode
        self.data = data

    def pack(self) -> bytes:
        return marshal.dumps((self.opcode, self.data))

    @classmethod
    def unpack(cls, data: bytes) -> "Message":
        return cls(*marshal.loads(data))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (other.opcode, other.data) == (self.opcode, self.data)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Message(opcode={self.opcode}, data={self.data[:40]!r}{'...' if len(self.data) > 40 else ''})"


class _ControlEvent(Event):
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def pack(self) -> bytes:
        return marshal.dumps(self.data)

    @classmethod
    def unpack(cls, data: bytes) -> "_ControlEvent":
        return cls(marshal.loads(data))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.data == self.data  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


@register_event
class Ping(_ControlEvent):
    """A ping the codec delivers instead of answering (``deliver_ping``: open_websocket_ping_frame)."""

    __slots__ = ()
    wire_id = 11


@register_event
class Pong(_ControlEvent):
    """A pong the codec delivers instead of dropping (``deliver_pong``: open_websocket_pong_frame)."""

    __slots__ = ()
    wire_id = 12


@register_event
class Close(Event):
    """The peer's close frame: `code` (1005 when it carried none) and the UTF-8 `reason`.

    The codec has already answered it (a `Reply` echoing the code, close=True) when this
    event is delivered; see `WebSocketCodec`.
    """

    __slots__ = ("code", "reason")
    wire_id = 13

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    @property
    def data(self) -> bytes:
        """The close frame's payload as received: 2-byte code + reason (empty for 1005)."""
        if self.code == 1005 and not self.reason:
            return b""
        return self.code.to_bytes(2, "big") + self.reason.encode("utf-8")

    def pack(self) -> bytes:
        return marshal.dumps((self.code, self.reason))

    @classmethod
    def unpack(cls, data: bytes) -> "Close":
        return cls(*marshal.loads(data))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (other.code, other.reason) == (self.code, self.reason)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"
