"""RFC 6455 frames: opcodes, close codes, masking, and the pure frame writer.

Everything here is a pure function of its arguments (no connection state): the reader lives
in `codec.py`, the per-connection writer (compression, fragment state) in `encoder.py`.

Masking uses two stdlib tricks, picked by size (CPython 3.11, this container, same run):
an int XOR (``int.from_bytes(data) ^ key * REPEAT[words]``) is ~0.4 us for 64 bytes, and four
strided ``bytes.translate`` passes over a bytearray win above ~512 bytes (~1.2 ms/MiB against
~3.6 ms/MiB for the int XOR).
"""

from __future__ import annotations

import os

__all__ = [
    "OPCODE_CONTINUATION", "OPCODE_TEXT", "OPCODE_BINARY", "OPCODE_CLOSE", "OPCODE_PING", "OPCODE_PONG",
    "DATA_OPCODES", "CONTROL_OPCODES", "KNOWN_OPCODES", "MAX_CONTROL_PAYLOAD",
    "CLOSE_NORMAL", "CLOSE_GOING_AWAY", "CLOSE_PROTOCOL_ERROR", "CLOSE_UNSUPPORTED_DATA", "CLOSE_NO_STATUS",
    "CLOSE_ABNORMAL", "CLOSE_INVALID_PAYLOAD", "CLOSE_POLICY_VIOLATION", "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_MANDATORY_EXTENSION", "CLOSE_INTERNAL_ERROR", "CLOSE_TLS",
    "is_valid_close_code", "apply_mask", "encode_frame", "close_payload", "close_frame", "parse_close_payload",
    "CloseFormatError", "random_mask_key",
]

# Opcodes (RFC 6455 §5.2); 3-7 and 0xB-0xF are reserved and fail the connection.
OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
DATA_OPCODES = frozenset((OPCODE_TEXT, OPCODE_BINARY))
CONTROL_OPCODES = frozenset((OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG))
KNOWN_OPCODES = frozenset((OPCODE_CONTINUATION,)) | DATA_OPCODES | CONTROL_OPCODES
MAX_CONTROL_PAYLOAD = 125  # control frames: at most 125 payload bytes, never fragmented (§5.5)

# Close codes (RFC 6455 §7.4.1; IANA registry).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005  # never on the wire: "the close frame carried no code"
CLOSE_ABNORMAL = 1006  # never on the wire: "the connection dropped without a close frame"
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MANDATORY_EXTENSION = 1010
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TLS = 1015  # never on the wire

# Codes a peer may send: the registered 1000-1003 and 1007-1014 (1012 service restart, 1013 try
# again later, 1014 bad gateway were registered after RFC 6455; Autobahn 7.7/7.9 accept them), and
# 3000-4999 (libraries, frameworks, applications). 1004-1006, 1015, 1016-2999, <1000, >=5000 fail.
_WIRE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


def is_valid_close_code(code: int) -> bool:
    """True if `code` may appear in a close frame on the wire (RFC 6455 §7.4, IANA registry)."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


# XOR tables for the translate-based mask: _XOR[k] maps each byte b to b ^ k.
_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]
_INT_MASK_LIMIT = 512  # below this the int XOR is faster, above it translate (measured, see module doc)
# REPEAT[w] * key (as a little-endian int) is the key repeated w times: one multiplication
# instead of building and converting the repeated key bytes (~0.2 us less per small frame).
REPEAT = [sum(1 << (32 * i) for i in range(words)) for words in range((_INT_MASK_LIMIT >> 2) + 2)]


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR `data` with the 4-byte masking `key` repeated (masking and unmasking are the same)."""
    n = len(data)
    if n <= _INT_MASK_LIMIT:
        if not n:
            return b""
        return (
            (int.from_bytes(data, "little") ^ int.from_bytes(key, "little") * REPEAT[(n + 3) >> 2])
            & ((1 << (n << 3)) - 1)
        ).to_bytes(n, "little")
    buf = bytearray(data)
    table = _XOR
    buf[0::4] = buf[0::4].translate(table[key[0]])
    buf[1::4] = buf[1::4].translate(table[key[1]])
    buf[2::4] = buf[2::4].translate(table[key[2]])
    buf[3::4] = buf[3::4].translate(table[key[3]])
    return bytes(buf)


def _header(first: int, length: int, masked: int) -> bytes:
    """The frame header bytes up to (not including) the masking key; `masked` is 0 or 0x80."""
    if length < 126:
        return bytes((first, masked | length))
    if length < 65536:
        return bytes((first, masked | 126)) + length.to_bytes(2, "big")
    return bytes((first, masked | 127)) + length.to_bytes(8, "big")


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview = b"",
    fin: bool = True,
    mask_key: bytes | None = None,
    rsv1: bool = False,
) -> bytes:
    """One frame on the wire. `mask_key` (4 bytes) masks it, as a client must; a server sends
    unmasked frames. `rsv1` marks the first frame of a permessage-deflate compressed message.

    Pure: no check that `opcode` is known or that a control payload fits (callers that take
    user input, `MessageEncoder` and `websocket.pack`, check those first).
    """
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if mask_key is None:
        if n < 126:
            return bytes((first, n)) + payload
        return _header(first, n, 0) + payload
    if len(mask_key) != 4:
        raise ValueError(f"mask_key must be 4 bytes, got {len(mask_key)}")
    return _header(first, n, 0x80) + mask_key + apply_mask(payload, mask_key)


class CloseFormatError(ValueError):
    """A close frame payload that breaks RFC 6455 §5.5.1 / §7.4; `code` is the close code to answer."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def close_payload(code: int = CLOSE_NORMAL, reason: str | bytes = "") -> bytes:
    """The payload of a close frame: the 2-byte code then the UTF-8 reason (at most 123 bytes)."""
    raw = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"close code {code} does not fit in 2 bytes")
    if len(raw) > MAX_CONTROL_PAYLOAD - 2:
        raise ValueError(f"close reason is {len(raw)} bytes; at most {MAX_CONTROL_PAYLOAD - 2} fit in a close frame")
    return code.to_bytes(2, "big") + raw


def close_frame(code: int = CLOSE_NORMAL, reason: str | bytes = "", mask_key: bytes | None = None) -> bytes:
    """A whole close frame (`mask_key` for the client side). `code` is not range-checked here:
    `disconnect` checks the user's code (1000 or 4000-4999), error replies use 1002/1007/1009."""
    return encode_frame(OPCODE_CLOSE, close_payload(code, reason), True, mask_key)


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received close frame; an empty payload is (1005, "").

    Raises CloseFormatError: a 1-byte payload or a code peers may not send -> 1002, a reason
    that is not UTF-8 -> 1007.
    """
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise CloseFormatError("close frame with a 1-byte payload", CLOSE_PROTOCOL_ERROR)
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise CloseFormatError(f"close code {code} may not be sent", CLOSE_PROTOCOL_ERROR)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CloseFormatError(f"close reason is not UTF-8 ({exc.reason})", CLOSE_INVALID_PAYLOAD) from None
    return code, reason


def random_mask_key() -> bytes:
    """A fresh client masking key (RFC 6455 §5.3: unpredictable, from a strong source)."""
    return os.urandom(4)
