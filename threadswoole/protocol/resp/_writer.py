"""The RESP reply writer: Swoole's ``Redis\\Server::format(type, value)`` and a native-value encoder.

`format` follows Swoole's type codes (NIL, ERROR, STATUS, INT, STRING, SET, MAP) and returns
False when the value does not fit the code. `encode` writes any nesting of Python values
(None, bool, int, float, str/bytes, list/tuple, dict, set, `StatusReply`, `ErrorReply`).
Both write RESP2 by default and RESP3 when ``resp3=True`` (a connection that said ``HELLO 3``):
RESP3 has its own null, map, set, double, boolean and big-number types; in RESP2 they become
what Redis sends (``$-1``, flat arrays, bulk strings, ``:1``/``:0``).

Swoole's ``SET`` is the general multi-bulk reply (KEYS, MGET, LRANGE use it), so it stays an
array in RESP3 too; a Python ``set`` given to `encode` becomes a RESP3 set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from typing import Any, Literal

__all__ = [
    "ERROR", "NIL", "STATUS", "INT", "STRING", "SET", "MAP",
    "ARRAY", "DOUBLE", "BOOLEAN", "BIG_NUMBER",
    "StatusReply", "ErrorReply", "format", "encode",
]  # fmt: skip

# Swoole\Redis\Server's reply type codes (same values as swoole-src).
ERROR = 0
NIL = 1
STATUS = 2
INT = 3
STRING = 4
SET = 5
MAP = 6
# (not in Swoole) further codes for RESP3 types; in RESP2 they degrade as Redis does.
ARRAY = 7  # a sequence of any encodable values, nested
DOUBLE = 8
BOOLEAN = 9
BIG_NUMBER = 10

_OK = b"+OK\r\n"
_NIL2 = b"$-1\r\n"
_NIL3 = b"_\r\n"
_BYTES_LIKE = (bytes, bytearray, memoryview)
_BULK_HEADS = [b"$%d\r\n" % n for n in range(1024)]  # a bulk string's head by length: cheaper than b"%d" formatting


class StatusReply(str):
    """A simple-string reply (``+OK``) inside a value given to `encode`."""

    __slots__ = ()


class ErrorReply(str):
    """An error reply (``-ERR ...``) inside a value given to `encode`; the text starts with its code."""

    __slots__ = ()


def _line(value: Any, default: bytes) -> bytes | None:
    """The text of a status or error line; CR and LF become spaces (as Redis does), so the reply stays valid."""
    if value is None:
        return default
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, _BYTES_LIKE):
        value = bytes(value)
    else:
        return None
    if b"\r" in value or b"\n" in value:
        value = value.replace(b"\r", b" ").replace(b"\n", b" ")
    return value


def _scalar(value: Any, resp3: bool) -> bytes | None:
    """A bulk string (or null) for one item of a SET or MAP: bytes, str, int, float or None."""
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    elif isinstance(value, int):
        value = b"%d" % value
    elif isinstance(value, float):
        value = _double_text(value)
    elif value is None:
        return _NIL3 if resp3 else _NIL2
    else:
        return None
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _double_text(value: float) -> bytes:
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"nan"
    return repr(value).encode()


def format(type: int, value: Any = None, resp3: bool = False) -> bytes | Literal[False]:  # noqa: A001 - Swoole's name
    """Swoole's ``format``: one reply of the given type code as bytes; False if `value` does not fit it."""
    if type == STRING:
        if isinstance(value, bytes):
            size = len(value)
            return _BULK_HEADS[size] + value + b"\r\n" if size < 1024 else b"$%d\r\n%s\r\n" % (size, value)
        if isinstance(value, (str, bytearray, memoryview)):
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            return b"$%d\r\n%s\r\n" % (len(data), data)
        return False
    if type == STATUS:
        if value is None:
            return _OK
        text = _line(value, b"OK")
        return False if text is None else b"+" + text + b"\r\n"
    if type == NIL:
        return _NIL3 if resp3 else _NIL2
    if type == INT:
        if isinstance(value, int):
            return b":%d\r\n" % value
        return False
    if type == ERROR:
        text = _line(value, b"ERR")
        return False if text is None else b"-" + text + b"\r\n"
    if type == SET:
        if isinstance(value, (str, *_BYTES_LIKE)) or not isinstance(value, (Sequence, Set)):
            return False
        items = [_scalar(item, resp3) for item in value]
        if None in items:
            return False
        return b"*%d\r\n" % len(items) + b"".join(items)  # type: ignore[arg-type]
    if type == MAP:
        if not isinstance(value, Mapping):
            return False
        out = [b"%" if resp3 else b"*", b"%d\r\n" % (len(value) if resp3 else 2 * len(value))]
        for key, item in value.items():
            key_bytes = _scalar(key, resp3) if key is not None else None
            item_bytes = _scalar(item, resp3)
            if key_bytes is None or item_bytes is None:
                return False
            out += (key_bytes, item_bytes)
        return b"".join(out)
    if type == ARRAY:
        if isinstance(value, (str, *_BYTES_LIKE)) or not isinstance(value, Sequence):
            return False
        try:
            return encode(list(value), resp3)
        except TypeError:
            return False
    if type == DOUBLE:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return encode(float(value), resp3)
        return False
    if type == BOOLEAN:
        return encode(value, resp3) if isinstance(value, bool) else False
    if type == BIG_NUMBER:
        if isinstance(value, int) and not isinstance(value, bool):
            return b"(%d\r\n" % value if resp3 else _scalar(value, False)  # type: ignore[return-value]
        return False
    return False


def encode(value: Any, resp3: bool = False) -> bytes:
    """Any nesting of None, bool, int, float, str, bytes, list/tuple, dict, set, StatusReply, ErrorReply -> RESP.

    Raises TypeError for anything else (an ``encode`` of a value the caller built is a programmer error).
    """
    out: list[bytes] = []
    _encode_into(value, resp3, out)
    return b"".join(out)


def _encode_into(value: Any, resp3: bool, out: list[bytes]) -> None:
    if isinstance(value, bytes):
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif isinstance(value, str):
        if isinstance(value, StatusReply):
            out.append(b"+" + _line(value, b"OK") + b"\r\n")  # type: ignore[operator]
        elif isinstance(value, ErrorReply):
            out.append(b"-" + _line(value, b"ERR") + b"\r\n")  # type: ignore[operator]
        else:
            data = value.encode("utf-8")
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif value is None:
        out.append(_NIL3 if resp3 else _NIL2)
    elif isinstance(value, bool):
        out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n"))
    elif isinstance(value, int):
        if resp3 and not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
            out.append(b"(%d\r\n" % value)
        else:
            out.append(b":%d\r\n" % value)
    elif isinstance(value, float):
        text = _double_text(value)
        out.append(b"," + text + b"\r\n" if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif isinstance(value, (bytearray, memoryview)):
        data = bytes(value)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, (list, tuple)):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    elif isinstance(value, Mapping):
        out.append(b"%%%d\r\n" % len(value) if resp3 else b"*%d\r\n" % (2 * len(value)))
        for key, item in value.items():
            _encode_into(key, resp3, out)
            _encode_into(item, resp3, out)
    elif isinstance(value, (set, frozenset)):
        out.append(b"~%d\r\n" % len(value) if resp3 else b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, resp3, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a RESP reply")
