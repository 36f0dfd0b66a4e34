"""RESP as a listener's application protocol (``open_redis_protocol``): one `RespCodec` per
connection in the reactor, and the worker-side handler that runs the server's `CommandTable`.

The reactor that owns a connection feeds its bytes to the codec; each recv() yields at most one
`RespBatch` (the commands it completed, in order). In BASE and THREAD modes the batch reaches the
handler below inline; in PROCESS mode it crosses the pipe packed (`RespBatch.pack`, wire id 21)
and the worker rebuilds it without parsing again. Per batch the handler runs the commands through
the table, writes all their replies with one send, then closes the connection if a handler asked
for it (QUIT's ``+OK`` goes out first).

A protocol error: the commands completed before the bad bytes are answered, then Redis's
``-ERR Protocol error: ...`` is written, the connection closed and the error counted in
``stats()['protocol_error_count']``. That is the server core's generic path (Host.protocol_failed):
the codec raises ProtocolError carrying the commands before the fault, the reactor delivers them,
discards further input and hands the error to the event dispatcher (inline in BASE and THREAD
modes, in the worker in PROCESS mode), which writes it behind their replies and closes
(`failed` below: the replies of a batch are written before the next event, so at once).

Each command counts as one request (``stats()['request_count']``, ``max_request``), as Redis
counts processed commands; a worker that reaches max_request finishes the batch in hand first.
"""

from __future__ import annotations

from threading import get_ident
from typing import Any, Mapping

from threadswoole._context import current
from threadswoole.connections.application import ApplicationProtocol
from threadswoole.errors import ConfigError
from threadswoole.protocol.resp import RespBatch, RespCodec
from threadswoole.redis.commands import CommandTable

__all__ = ["RedisProtocol", "RespEventHandler"]


class RedisProtocol(ApplicationProtocol):
    """The RESP protocol of one listener; `server` is the Server whose `command_table` answers it."""

    name = "redis"

    def __init__(self, settings: Mapping[str, Any], server: Any = None) -> None:
        super().__init__({})  # RESP does its own framing: EOF/length settings do not apply
        table = getattr(server, "command_table", None)
        if not isinstance(table, CommandTable):
            raise ConfigError(
                "open_redis_protocol is the protocol of threadswoole.redis.Server (its set_handler() "
                "commands answer it); a plain Server cannot serve it"
            )
        self.table = table
        self.max_bulk_length = int(settings["package_max_length"])

    def new_codec(self) -> RespCodec:
        return RespCodec(max_bulk_length=self.max_bulk_length, batch=True)

    def event_handler(self, dispatcher: Any) -> "RespEventHandler":
        return RespEventHandler(self.table, dispatcher)

    def required_callback(self) -> str | None:
        return None  # the command table answers; no callback is needed


class RespEventHandler:
    """One worker's RESP commands on one listener: each batch runs through the command table and
    its replies leave in one send (see the module docstring)."""

    __slots__ = ("table", "server", "router", "runtime", "max_request", "send", "handlers", "sessions", "thread")

    def __init__(self, table: CommandTable, dispatcher: Any) -> None:
        self.table = table
        self.server = dispatcher.server
        self.router = dispatcher.router
        self.runtime = dispatcher.runtime
        self.max_request = self.runtime.max_request
        self.handlers = table.handlers
        self.sessions = table.sessions
        self.send: Any = None  # Server.send's fast path of this worker, bound on first use
        self.thread = 0  # this worker's thread (threading.get_ident()), bound on first use

    def event(self, port: Any, fd: int, reactor_id: int, event: Any) -> None:
        """A `RespBatch` (or one `RespCommand`): run it, send its replies, close if asked to.

        The common case, one command with a handler found under its name as sent that returns
        bytes and neither sends nor closes itself, runs right here: what CommandTable.run_batch
        does, in this one frame (about 2,500 instructions less per command, callgrind,
        stress/callgrind/base_redis.sh). Everything else goes through the table."""
        if type(event) is not RespBatch:
            event = (event.args,)
        runtime = self.runtime
        session = self.sessions.get(fd) or self.table.session(fd)
        thread = self.thread
        if len(event) == 1 and thread and not session.closing:
            args = event[0]
            handler = self.handlers.get(args[0])
            if handler is not None:
                runtime.requests += 1
                session.thread = thread  # a send or close by the handler joins this reply (CommandTable.capture)
                try:
                    reply = handler(self.server, fd, args[1:])
                except Exception as exc:
                    reply = self.table.failure_reply(exc, args)
                finally:
                    session.thread = 0
                if type(reply) is bytes and session.pending is None and not session.closing:
                    if reply:
                        self.send(fd, reply)
                    if self.max_request and runtime.requests >= self.max_request:
                        runtime.reached_max_request()
                    return
                self.finish(fd, session, self.table.conclude(session, reply))
                return
        runtime.requests += len(event)
        if not thread:
            self.bind()
        self.finish(fd, session, self.table.run_batch(self.server, session, event))

    def finish(self, fd: int, session: Any, reply: bytes | None) -> None:
        """Send the reply of a batch (None: nothing), close if a handler asked to, count it for max_request."""
        if session.closing:
            if reply is not None and not session.reset:
                self.router.send(fd, reply)
            self.router.close(fd, session.reset)
        elif reply is not None:
            self.send(fd, reply)
        runtime = self.runtime
        if self.max_request and runtime.requests >= self.max_request:
            runtime.reached_max_request()

    def bind(self) -> None:
        """At the first event, in the worker's own thread (it binds its context, and its send
        function, after it built its dispatcher): the thread and the send function."""
        self.thread = get_ident()
        self.send = current().send_function or self.router.send

    def failed(self, port: Any, fd: int, response: bytes) -> bool:
        """A protocol error behind the commands handed over: their replies are written already
        (each batch is answered before the next event), so the dispatcher answers it now."""
        return False

    def closed(self, port: Any, fd: int) -> None:
        """After the `close` callback of a RESP connection: its session (HELLO state) is dropped."""
        self.table.forget(fd)
