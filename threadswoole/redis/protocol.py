"""RESP as a listener's application protocol (``open_redis_protocol``): one `RespCodec` per
connection in the reactor, and the worker-side handler that runs the server's `CommandTable`.

The reactor that owns a connection feeds its bytes to the codec; each recv() yields at most one
`RespBatch` (the commands it completed, in order). In BASE and THREAD modes the batch reaches the
handler below inline; in PROCESS mode it crosses the pipe packed (`RespBatch.pack`, wire id 21)
and the worker rebuilds it without parsing again. Per batch the handler runs the commands through
the table, writes all their replies with one send, then closes the connection if a handler asked
for it (QUIT's ``+OK`` goes out first). A protocol error is the reactor's: the commands completed
before it are delivered, Redis's ``-ERR Protocol error: ...`` is written, the connection closed
and counted in ``stats()['protocol_error_count']``.

Each command counts as one request (``stats()['request_count']``, ``max_request``), as Redis
counts processed commands; a worker that reaches max_request finishes the batch in hand first.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from threadswoole._context import current
from threadswoole.connections.application import ApplicationProtocol
from threadswoole.errors import ConfigError
from threadswoole.protocol.resp import RespBatch, RespCodec
from threadswoole.redis.commands import CommandTable

__all__ = ["RedisProtocol"]


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

    def event_handler(self, dispatcher: Any) -> Callable[[Any, int, int, Any], None]:
        """The function this worker's dispatcher calls for every RESP event of the listener."""
        table = self.table
        server = dispatcher.server
        router = dispatcher.router
        runtime = dispatcher.runtime
        max_request = runtime.max_request
        sessions_get = table.sessions.get
        new_session = table.session
        run_batch = table.run_batch
        send: Any = None  # Server.send's fast path of this worker, bound on first use (see below)

        def on_resp_event(port: Any, fd: int, reactor_id: int, event: Any) -> None:
            nonlocal send
            commands = event.commands if type(event) is RespBatch else [event.args]
            session = sessions_get(fd) or new_session(fd)
            runtime.requests += len(commands)
            reply = run_batch(server, session, commands)
            if session.closing:
                if reply is not None and not session.reset:
                    router.send(fd, reply)
                router.close(fd, session.reset)
            elif reply is not None:
                if send is None:
                    # The worker binds its context (and its send function) after it built its
                    # dispatcher, so the function is looked up here, in the worker's own thread.
                    send = current().send_function or router.send
                send(fd, reply)
            if max_request and runtime.requests >= max_request:
                runtime.reached_max_request()

        return on_resp_event

    def close_handler(self, dispatcher: Any) -> Callable[[int], None]:
        """After the `close` callback of a RESP connection: its session (HELLO state) is dropped."""
        return self.table.forget
