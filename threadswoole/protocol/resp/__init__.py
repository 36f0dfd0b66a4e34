"""RESP, the Redis protocol, sans-IO: the request parser (`RespCodec`) and the reply writer (`format`, `encode`).

    codec = RespCodec(max_bulk_length=settings["package_max_length"])
    for event in codec.feed(chunk):           # RespCommand(args=[b"SET", b"k", b"v"]), in order
        reply = table.dispatch(server, fd, event.args)

Figures (CPython 3.11.7 on this project's 2-core dev container, CPU time, `python -m stress.resp_bench
codec`; the machine is shared, so compare ratios within one run):

    16 pipelined SET/GET per feed, batch=True        ~1.0 us per command   (the split alone: ~0.17 us)
    16 pipelined SET/GET per feed, one event each     ~1.2 us per command
    1 SET per feed (redis-benchmark -P 1)             ~2.2 us
    16 inline SET                                     ~0.9 us per command
    16 SET whose value holds CRLF (the exact path)    ~5 us per command

Since then (instructions, callgrind, so free of the machine's noise): a feed of one whole command
takes a path of its own (one GET: 18.6k -> 13.2k instructions; then a hot path at the top of
`feed` for one to three arguments and for one plain inline line: 13.4k -> 6.9k, a SET 8.0k, a
PING 6.1k, inline 6.7k), and a whole pipeline of one shape (16 GETs, 16 SETs) is cut column by
column (16 GETs: 9.2k -> 5.4k per command; mixed shapes take the general loop as before).
Whole servers: docs/redis.md.
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
