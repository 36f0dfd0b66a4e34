"""`threadswoole.redis.Server`: Swoole's ``Redis\\Server``, a `threadswoole.Server` whose main port speaks RESP.

    server = redis.Server("127.0.0.1", 6379, SWOOLE_BASE)
    server.set_handler("GET", lambda server, fd, args: redis.format(redis.STRING, store[args[0]]))
    server.start()

What the class adds to `threadswoole.Server` (contract §10):

* the main port speaks RESP (``open_redis_protocol``, forced on it as Swoole does, with HTTP and
  WebSocket off); commands go to the handlers of one `CommandTable` (`command_table`), in every
  mode, and a command with no handler gets Redis's unknown-command error;
* `send(fd, ...)` inside a handler of `fd` joins the handler's reply (the replies of a pipeline stay
  in order and leave in one write), and `close(fd)` there waits until that reply is written;
* callbacks: no `receive` is needed (nor ever called) on a RESP port; `connect`, `close`,
  `buffer_full`/`buffer_empty` work as on any server (Swoole's Redis server keeps them too). A
  `receive` callback serves ports added with `add_listener`, which start as raw streams (Swoole
  turns ``open_redis_protocol`` off for them); ``port.set(open_redis_protocol=True)`` makes one
  speak RESP with the same handlers;
* SWOOLE_PROCESS: a connection's commands must all reach one worker (its HELLO state and the
  order of its replies live there), so dispatch_mode 1 and 3 raise ConfigError at start().
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from threadswoole._aliases import alias
from threadswoole._context import current
from threadswoole.constants import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_SOCK_TCP
from threadswoole.errors import ConfigError
from threadswoole.protocol.resp import ERROR, INT, MAP, NIL, SET, STATUS, STRING
from threadswoole.protocol.resp import format as format_reply
from threadswoole.redis.commands import CommandTable, log_handler_error
from threadswoole.server import Server as BaseServer

__all__ = ["Server"]

_STATELESS_DISPATCH = (1, 3)  # round robin, idle worker: a connection's commands would spread


class Server(BaseServer):
    """A Redis-protocol server: `set_handler(command, callback)`, then `start()`."""

    NIL, ERROR, STATUS, INT, STRING, SET, MAP = NIL, ERROR, STATUS, INT, STRING, SET, MAP
    format = staticmethod(format_reply)

    def __init__(self, host: str = "0.0.0.0", port: int = 0, mode: int = SWOOLE_BASE, sock_type: int = SWOOLE_SOCK_TCP) -> None:
        super().__init__(host, port, mode, sock_type)
        self.command_table = CommandTable(error_hook=_count_handler_error)
        main = self.ports[0]
        if main.is_stream:
            main.set(open_redis_protocol=True, open_http_protocol=False, open_websocket_protocol=False)

    # -- handlers -------------------------------------------------------------------------------
    def set_handler(self, command: str, callback: Callable[[Any, int, list[bytes]], Any]) -> bool:
        """Answer `command` (case-insensitive) with `callback(server, fd, args)`; args are the bytes after the name.

        The callback's bytes (or str) return value is the reply; None sends nothing (it may
        have sent with `server.send(fd, ...)`). Set before start() for every worker; set later,
        it only changes the calling process (every thread of it in SWOOLE_THREAD)."""
        return self.command_table.set_handler(command, callback)

    def get_handler(self, command: str) -> Callable[..., Any] | None:
        """The callback set for `command`, or None."""
        return self.command_table.get_handler(command)

    setHandler = alias("set_handler")
    getHandler = alias("get_handler")

    # -- sends and closes from handlers -----------------------------------------------------------
    def send(self, fd: int | str, data: Any, server_socket: int = -1) -> bool:
        """`Server.send`; inside a handler of `fd` the data joins that handler's reply (kept in order)."""
        if self.command_table.capture(fd, data):
            return True
        return super().send(fd, data, server_socket)

    def close(self, fd: int | str, reset: bool = False) -> bool:
        """`Server.close`; inside a handler of `fd` the connection closes once the reply is written
        (with `reset`, at once and without the reply); the rest of its pipeline is not run."""
        if self.command_table.defer_close(fd, reset):
            return True
        return super().close(fd, reset)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> bool:
        """`Server.start`, after checking that each connection's commands reach one worker."""
        if self.mode == SWOOLE_PROCESS and self.setting.get("dispatch_func") is None:
            dispatch_mode = self.setting.get("dispatch_mode", 2)
            if dispatch_mode in _STATELESS_DISPATCH:
                raise ConfigError(
                    f"redis.Server in SWOOLE_PROCESS needs a dispatch mode that keeps a connection on one "
                    f"worker (2, 4 or 5), not {dispatch_mode}: its pipelined replies and HELLO state live there"
                )
        return super().start()

    def format_for(self, fd: int, type: int, value: Any = None) -> bytes | Literal[False]:  # noqa: A002
        """`format` in the protocol `fd` speaks: RESP3 after the client said ``HELLO 3`` (not in Swoole)."""
        return self.command_table.format(fd, type, value)


def _count_handler_error(exc: BaseException, args: list[bytes]) -> None:
    """A handler raised: logged with its traceback and counted in callback_error_count (§5.4)."""
    runtime = current().runtime
    if runtime is None:  # not in a worker (a table driven by hand): log only
        log_handler_error(exc, args)
        return
    runtime.failed(f"redis {args[0][:64].decode('latin-1')} handler")
