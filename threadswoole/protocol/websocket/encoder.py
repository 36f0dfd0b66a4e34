"""`MessageEncoder`: the per-connection writer (frames out, with permessage-deflate when negotiated).

Frames without compression need no state: `encode_frame` builds them anywhere (in PROCESS
mode, in the worker). With permessage-deflate and context takeover the compressor's state is
shared by every message of the connection, so one `MessageEncoder` per connection, owned by
one thread (the reactor's), must build every compressed frame in order.
"""

from __future__ import annotations

import zlib

from threadswoole.protocol.websocket.deflate import DeflateParameters, Deflater
from threadswoole.protocol.websocket.frames import (
    CLOSE_NORMAL,
    CONTROL_OPCODES,
    KNOWN_OPCODES,
    MAX_CONTROL_PAYLOAD,
    OPCODE_CLOSE,
    OPCODE_CONTINUATION,
    close_payload,
    encode_frame,
    random_mask_key,
)

__all__ = ["MessageEncoder"]


class MessageEncoder:
    """Builds the frames one side of a connection sends.

    `deflate`: the negotiated parameters (None: never compress). Messages shorter than
    `compress_min_size` are sent uncompressed (RSV1 clear), which RFC 7692 allows per message.
    `client_side`: mask every frame with a fresh random key, compress with the client's window.
    Not thread-safe: one owner per connection.
    """

    __slots__ = ("client_side", "compress_min_size", "_deflater", "_open_opcode", "_open_compressed")

    def __init__(
        self,
        deflate: DeflateParameters | None = None,
        *,
        client_side: bool = False,
        compress_min_size: int = 0,
        level: int = zlib.Z_DEFAULT_COMPRESSION,
    ) -> None:
        self.client_side = client_side
        self.compress_min_size = compress_min_size
        if deflate is not None:
            no_takeover, bits = deflate.sender(client_side)
            self._deflater: Deflater | None = Deflater(no_takeover, bits, level)
        else:
            self._deflater = None
        self._open_opcode = 0  # opcode of the fragmented message being sent (0: none)
        self._open_compressed = False

    @property
    def compressing(self) -> bool:
        return self._deflater is not None

    def encode(self, opcode: int, payload: bytes | bytearray | memoryview = b"", fin: bool = True) -> bytes:
        """The frame(s) for `payload` as bytes ready for the socket.

        Data opcodes start a message, or continue the open one (a fragmented message goes out
        as ``encode(TEXT, a, fin=False)``, ``encode(CONTINUATION, b)``; a data opcode while a
        message is open is sent as its continuation, so the stream stays valid). Control frames
        (ping, pong, close) may be sent between fragments, are never compressed, and carry at
        most 125 bytes. Raises ValueError for an unknown opcode, an oversized or fragmented
        control frame, or a continuation with no message open.
        """
        if opcode not in KNOWN_OPCODES:
            raise ValueError(f"unknown WebSocket opcode {opcode!r}")
        mask_key = random_mask_key() if self.client_side else None
        if opcode in CONTROL_OPCODES:
            if len(payload) > MAX_CONTROL_PAYLOAD:
                raise ValueError(f"control frame payload is {len(payload)} bytes; at most 125 allowed")
            if not fin:
                raise ValueError("control frames cannot be fragmented")
            return encode_frame(opcode, payload, True, mask_key)
        if self._open_opcode:
            frame_opcode, compressed, rsv1 = OPCODE_CONTINUATION, self._open_compressed, False
        elif opcode == OPCODE_CONTINUATION:
            raise ValueError("continuation frame without a message in progress")
        else:
            frame_opcode = opcode
            compressed = rsv1 = self._deflater is not None and (not fin or len(payload) >= self.compress_min_size)
        if compressed:
            payload = self._deflater.compress(payload, fin)  # type: ignore[union-attr]
        if fin:
            self._open_opcode = 0
        elif not self._open_opcode:
            self._open_opcode, self._open_compressed = opcode, compressed
        return encode_frame(frame_opcode, payload, fin, mask_key, rsv1)

    def close(self, code: int = CLOSE_NORMAL, reason: str | bytes = "") -> bytes:
        """A close frame (reason at most 123 UTF-8 bytes)."""
        return encode_frame(OPCODE_CLOSE, close_payload(code, reason), True,
                            random_mask_key() if self.client_side else None)
