"""The Redis command table: command name -> handler, and the per-connection reply state.

`redis.Server` keeps one `CommandTable` and hands it each parsed command; the table finds the
handler (names are case-insensitive), calls ``handler(server, fd, args)`` with the arguments
after the name, and returns the reply bytes to send (None: nothing to send). A command with no
handler gets Redis's own unknown-command error. Nothing here touches a socket, so the table is
tested without a server.

Replies stay in order, as Redis's do: while a handler runs, bytes it sends with
``server.send(fd, ...)`` are captured (`capture`) and joined with what it returns, and a
``server.close(fd)`` it calls is deferred (`defer_close`) until that reply is written; the rest
of a pipelined batch is then not run (Redis stops reading a client it is closing).

Like Redis, a connection whose command is ``POST`` or ``Host:`` (an HTTP request) is closed
without a reply unless a handler is set for that name.

HELLO is built in (a handler set for it replaces it): ``HELLO 3`` switches the connection to
RESP3 (`Session.resp3`), which the built-in reply and `CommandTable.format` honour.

Threads (SWOOLE_THREAD shares one table between worker threads; free-threaded CPython too): a
connection's commands run on one thread at a time, so a `Session` is only touched by that
thread; the dict of sessions is shared, and creating or forgetting a session takes a lock. What
a running handler is replying to is per thread (`capture` and `defer_close` only act for the
connection whose handler runs on the calling thread), so a handler of another thread that
sends to this connection is never mixed into its reply.
"""

from __future__ import annotations

import itertools
import logging
import threading
from threading import get_ident
from typing import Any, Callable, Literal

from threadswoole._arguments import as_bytes
from threadswoole.protocol.resp import encode
from threadswoole.protocol.resp import format as format_reply

__all__ = ["CommandTable", "Session", "unknown_command", "log_handler_error", "MAX_COMMAND_NAME"]

Handler = Callable[[Any, int, list[bytes]], Any]

MAX_COMMAND_NAME = 63  # Swoole refuses longer names (SW_REDIS_MAX_COMMAND_SIZE is 64 with its NUL)

_log = logging.getLogger("threadswoole")
_CROSS_PROTOCOL = (b"host:", b"post")  # first words of HTTP request lines Redis refuses to run


class Session:
    """What the worker keeps about one RESP connection: its protocol and the reply being built."""

    __slots__ = ("fd", "id", "resp3", "name", "pending", "thread", "closing", "reset")

    def __init__(self, fd: int, client_id: int) -> None:
        self.fd = fd
        self.id = client_id  # HELLO's "id"
        self.resp3 = False  # True after HELLO 3
        self.name: bytes | None = None  # HELLO ... SETNAME
        self.pending: list[bytes] | None = None  # sends captured while a handler of this fd runs (None: none yet)
        self.thread = 0  # the thread (threading.get_ident()) running a handler of this fd; 0: none
        self.closing = False  # a handler asked to close: close once the reply is written
        self.reset = False  # ...with close(fd, reset=True): drop the reply, reset the connection


def unknown_command(args: list[bytes]) -> bytes:
    """Redis's reply to a command nobody handles (server.c, the args quoted up to 128 bytes)."""
    quoted = b""
    for arg in args[1:]:
        if len(quoted) >= 128:
            break
        quoted += b"'" + arg[: 128 - len(quoted)] + b"' "
    text = b"unknown command '" + args[0][:128] + b"', with args beginning with: " + quoted
    return b"-ERR " + text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


class CommandTable:
    """Handlers by command name, the sessions of this worker's connections, and the dispatch of commands.

    `error_hook(exc, args)` is called when a handler raises an Exception (the client gets an
    ``-ERR`` reply so that its pipeline stays in step); the default logs it on the
    ``threadswoole`` logger with its traceback.
    """

    def __init__(
        self,
        server_name: str = "threadswoole",
        server_version: str = "0.1.0",
        error_hook: Callable[[BaseException, list[bytes]], None] | None = None,
    ) -> None:
        self._handlers: dict[bytes, Handler] = {}
        self.handlers = self._handlers  # read-only view for the dispatch hot path (RespEventHandler): name as sent -> handler
        self.sessions: dict[int, Session] = {}
        self.server_name = server_name
        self.server_version = server_version
        self.error_hook = error_hook or log_handler_error
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # creating and forgetting sessions (THREAD mode: several threads)

    # -- the handlers -----------------------------------------------------------------------------------
    def set_handler(self, command: str, callback: Handler) -> bool:
        """Register `callback(server, fd, args)` for `command` (case-insensitive); replaces an earlier one."""
        key = _key(command)
        if not callable(callback):
            raise TypeError(f"the handler of {command!r} must be callable, got {type(callback).__name__}")
        self._handlers[key] = callback
        self._handlers[key.upper()] = callback  # clients send upper case: found without lower()
        return True

    def get_handler(self, command: str) -> Handler | None:
        """The callable registered for `command`, or None."""
        return self._handlers.get(_key(command))

    # -- the sessions -------------------------------------------------------------------------------------
    def session(self, fd: int) -> Session:
        """The session of `fd`, created on first use."""
        session = self.sessions.get(fd)
        if session is None:
            with self._lock:
                session = self.sessions.get(fd)
                if session is None:
                    session = self.sessions[fd] = Session(fd, next(self._ids))
        return session

    def forget(self, fd: int) -> None:
        """Drop the session of a closed connection."""
        with self._lock:
            self.sessions.pop(fd, None)

    def capture(self, fd: Any, data: Any) -> bool:
        """If a handler of `fd` is running on this thread, keep `data` for its reply (in order) and
        return True. `data` is checked as `Server.send` checks it (TypeError for other types)."""
        session = self.sessions.get(fd)
        if session is None or session.thread != get_ident():
            return False
        data = as_bytes(data)
        if session.pending is None:
            session.pending = [data]
        else:
            session.pending.append(data)
        return True

    def defer_close(self, fd: Any, reset: bool = False) -> bool:
        """If a handler of `fd` is running on this thread, mark it to be closed after its reply
        (`reset`: reset at once instead, the reply dropped) and return True."""
        session = self.sessions.get(fd)
        if session is None or session.thread != get_ident():
            return False
        session.closing = True
        session.reset = session.reset or bool(reset)
        return True

    def closing(self, fd: int) -> bool:
        """True if a handler asked to close `fd` (the caller closes it after writing the reply)."""
        session = self.sessions.get(fd)
        return session is not None and session.closing

    def is_resp3(self, fd: int) -> bool:
        """True once the connection switched to RESP3 with HELLO 3."""
        session = self.sessions.get(fd)
        return session is not None and session.resp3

    def set_resp3(self, fd: int, resp3: bool) -> None:
        """Switch the connection's replies to RESP3 (or back): for a HELLO handler of the application's own."""
        self.session(fd).resp3 = bool(resp3)

    def format(self, fd: int, type: int, value: Any = None) -> bytes | Literal[False]:  # noqa: A002
        """`format` in the protocol `fd` speaks (RESP3 after HELLO 3)."""
        return format_reply(type, value, self.is_resp3(fd))

    # -- dispatch -------------------------------------------------------------------------------------------
    def dispatch(self, server: Any, fd: int, args: list[bytes]) -> bytes | None:
        """Run one command; return the reply to send (None: nothing)."""
        session = self.session(fd)
        if session.closing:
            return None
        return self.run_batch(server, session, (args,))

    def dispatch_batch(self, server: Any, fd: int, commands: list[list[bytes]]) -> bytes | None:
        """Run pipelined commands in order; return all their replies as one write (None: nothing)."""
        return self.run_batch(server, self.session(fd), commands)

    def run_batch(self, server: Any, session: Session, commands: list[list[bytes]]) -> bytes | None:
        """`dispatch_batch` for a session in hand (redis.Server's event handler looks it up once)."""
        fd = session.fd
        replies = session.pending = []  # what handlers send is captured into the replies, in order
        session.thread = get_ident()
        handlers = self._handlers
        try:
            for args in commands:
                if session.closing:
                    break
                # The common case inline (a handler found under the name as sent, bytes returned);
                # everything else goes through _run.
                handler = handlers.get(args[0])
                if handler is None:
                    self._run(server, fd, args, session, replies)
                    continue
                try:
                    result = handler(server, fd, args[1:])
                except Exception as exc:
                    self._handler_failed(exc, args, replies)
                    continue
                if type(result) is bytes:
                    if result:
                        replies.append(result)
                elif result is not None:
                    self._keep_result(result, replies)
        finally:
            session.pending = None
            session.thread = 0
        if not replies:
            return None
        return replies[0] if len(replies) == 1 else b"".join(replies)

    def conclude(self, session: Session, result: Any) -> bytes | None:
        """The reply of one command that a caller ran itself (RespEventHandler's hot path), the
        handler returned and ``session.thread`` reset: what it sent first, then `result`
        (bytes, str or bytes-like; anything else sends nothing). None: nothing to send."""
        replies = session.pending or []
        session.pending = None
        if type(result) is bytes:
            if result:
                replies.append(result)
        else:
            self._keep_result(result, replies)
        if not replies:
            return None
        return replies[0] if len(replies) == 1 else b"".join(replies)

    def failure_reply(self, exc: Exception, args: list[bytes]) -> bytes:
        """A handler raised: the hook logs it, the client gets an error in its reply's place."""
        replies: list[bytes] = []
        self._handler_failed(exc, args, replies)
        return replies[0]

    def _run(self, server: Any, fd: int, args: list[bytes], session: Session, replies: list[bytes]) -> None:
        name = args[0]
        handlers = self._handlers
        handler = handlers.get(name)
        if handler is None:
            handler = handlers.get(name.lower())
            if handler is None:
                lower = name.lower()
                if lower in _CROSS_PROTOCOL:
                    # Redis's guard against HTTP requests replayed at it (a browser tricked into a POST):
                    # close at once, dropping the replies not written yet (as Redis's freeClientAsync does).
                    _log.warning("redis connection %s sent %r: an HTTP request? closing it", fd, name[:16])
                    session.closing = True
                    del replies[:]
                    return
                replies.append(self._hello(session, args) if lower == b"hello" else unknown_command(args))
                return
        try:
            result = handler(server, fd, args[1:])
        except Exception as exc:
            self._handler_failed(exc, args, replies)
            return
        if type(result) is bytes:
            if result:
                replies.append(result)
        else:
            self._keep_result(result, replies)

    def _handler_failed(self, exc: Exception, args: list[bytes], replies: list[bytes]) -> None:
        """The client must still get one reply per command: an error, while the hook logs the exception."""
        self.error_hook(exc, args)
        replies.append(b"-ERR internal error in the '" + _printable(args[0]) + b"' handler\r\n")

    @staticmethod
    def _keep_result(result: Any, replies: list[bytes]) -> None:
        """A handler's return value other than bytes: str and bytes-like are sent; anything else is not."""
        if isinstance(result, (bytearray, memoryview)):
            replies.append(bytes(result))
        elif isinstance(result, str):
            replies.append(result.encode("utf-8"))
        # Anything else (None, True from server.send, ...) sends nothing.

    # -- HELLO ---------------------------------------------------------------------------------------------
    def _hello(self, session: Session, args: list[bytes]) -> bytes:
        """HELLO [protover [AUTH user pass] [SETNAME name]], as Redis answers it (any AUTH is accepted: no ACL)."""
        version = 0
        if len(args) >= 2:
            try:
                version = int(args[1])
            except ValueError:
                return b"-ERR Protocol version is not an integer or out of range\r\n"
            if b"%d" % version != args[1] or not -(2**63) <= version < 2**63:
                return b"-ERR Protocol version is not an integer or out of range\r\n"
            if version < 2 or version > 3:
                return b"-NOPROTO unsupported protocol version\r\n"
        name = None
        j = 2
        while j < len(args):
            option = args[j].lower()
            more = len(args) - 1 - j
            if option == b"auth" and more >= 2:
                j += 3
            elif option == b"setname" and more >= 1:
                name = args[j + 1]
                if any(c <= 32 or c > 126 for c in name):
                    return b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
                j += 2
            else:
                return b"-ERR Syntax error in HELLO option '" + _printable(args[j]) + b"'\r\n"
        if name is not None:
            session.name = name or None
        if version:
            session.resp3 = version == 3
        return encode(
            {
                "server": self.server_name,
                "version": self.server_version,
                "proto": 3 if session.resp3 else 2,
                "id": session.id,
                "mode": "standalone",
                "role": "master",
                "modules": [],
            },
            session.resp3,
        )


def _key(command: Any) -> bytes:
    if not isinstance(command, str):
        raise TypeError(f"command must be a str, got {type(command).__name__}")
    key = command.strip().lower().encode("utf-8")
    if not key or len(key) > MAX_COMMAND_NAME or command != command.strip():
        raise ValueError(f"invalid command name {command!r} (1 to {MAX_COMMAND_NAME} bytes, no blanks around it)")
    return key


def _printable(data: bytes) -> bytes:
    return data.replace(b"\r", b" ").replace(b"\n", b" ")


def log_handler_error(exc: BaseException, args: list[bytes]) -> None:
    """The default error hook: log the handler's exception with its traceback."""
    _log.error("redis handler of %r raised", args[0][:64], exc_info=exc)
