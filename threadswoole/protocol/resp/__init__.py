"""RESP, the Redis protocol, sans-IO: the request parser (`RespCodec`) and the reply writer (`format`, `encode`).

    codec = RespCodec(max_bulk_length=settings["package_max_length"])
    for event in codec.feed(chunk):           # RespCommand(args=[b"SET", b"k", b"v"]), in order
        reply = table.dispatch(server, fd, event.args)

Performance figures: see the module docstring of `_parser` and the README of the redis package.
"""

from __future__ import annotations

from threadswoole.protocol.resp._inline import split_args
from threadswoole.protocol.resp._parser import (
    DEFAULT_MAX_BULK_LENGTH,
    DEFAULT_MAX_INLINE_LENGTH,
    DEFAULT_MAX_MULTIBULK_LENGTH,
    DEFAULT_MAX_QUERY_LENGTH,
    RespBatch,
    RespCodec,
    RespCommand,
)
from threadswoole.protocol.resp._writer import (
    ARRAY,
    BIG_NUMBER,
    BOOLEAN,
    DOUBLE,
    ERROR,
    INT,
    MAP,
    NIL,
    SET,
    STATUS,
    STRING,
    ErrorReply,
    StatusReply,
    encode,
    format,
)

__all__ = [
    "RespCodec", "RespCommand", "RespBatch", "split_args",
    "DEFAULT_MAX_BULK_LENGTH", "DEFAULT_MAX_MULTIBULK_LENGTH", "DEFAULT_MAX_INLINE_LENGTH", "DEFAULT_MAX_QUERY_LENGTH",
    "ERROR", "NIL", "STATUS", "INT", "STRING", "SET", "MAP", "ARRAY", "DOUBLE", "BOOLEAN", "BIG_NUMBER",
    "StatusReply", "ErrorReply", "format", "encode",
]  # fmt: skip
