"""threadswoole.redis: Swoole's Redis server (``Swoole\\Redis\\Server``), RESP on the main port.

    from threadswoole import redis

    server = redis.Server("127.0.0.1", 6379, threadswoole.SWOOLE_BASE)

    def get(server, fd, args):                  # args: what follows the command name, as bytes
        value = store.get(args[0])
        return redis.format(redis.NIL) if value is None else redis.format(redis.STRING, value)

    server.set_handler("GET", get)              # returned bytes are the reply; None sends nothing
    server.start()

A complete example: examples/redis_kv.py.

`Server` is threadswoole.redis.server.Server; the rest of the package needs no server: the reply
type codes and `format` (threadswoole.protocol.resp), the `CommandTable` that `redis.Server`
dispatches through, and `RedisProtocol` (threadswoole.redis.protocol), the listener protocol
that connects them to the server core. API and figures: docs/redis.md.
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
from threadswoole.redis.server import Server

__all__ = [
    "Server", "ERROR", "NIL", "STATUS", "INT", "STRING", "SET", "MAP", "ARRAY", "DOUBLE", "BOOLEAN", "BIG_NUMBER",
    "format", "encode", "StatusReply", "ErrorReply", "CommandTable", "Session", "unknown_command",
]  # fmt: skip
