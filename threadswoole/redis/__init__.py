"""threadswoole.redis: Swoole's Redis server (``Swoole\\Redis\\Server``), RESP on the main port.

    from threadswoole import redis

    server = redis.Server("127.0.0.1", 6379, threadswoole.SWOOLE_BASE)
    server.set_handler("GET", lambda srv, fd, args: redis.format(redis.STRING, store.get(args[0])))
    server.start()

This package holds the parts that need no server: the reply type codes and `format`
(threadswoole.protocol.resp), and the `CommandTable` that `redis.Server` dispatches through.
"""

from __future__ import annotations

from threadswoole.protocol.resp import (
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
from threadswoole.redis.commands import CommandTable, Session, unknown_command

__all__ = [
    "ERROR", "NIL", "STATUS", "INT", "STRING", "SET", "MAP", "ARRAY", "DOUBLE", "BOOLEAN", "BIG_NUMBER",
    "format", "encode", "StatusReply", "ErrorReply", "CommandTable", "Session", "unknown_command",
]  # fmt: skip
