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
``stats()['protocol_error_count']``. In BASE and THREAD modes the reactor does it (Host: the
commands run inline, so their replies are queued first; then a lingering close). In PROCESS
mode the replies come from a worker later, so the error travels to the worker behind the
commands as a `RespFailure` event and the worker writes it and closes; the codec ignores what
the client sends meanwhile.

Each command counts as one request (``stats()['request_count']``, ``max_request``), as Redis
counts processed commands; a worker that reaches max_request finishes the batch in hand first.
"""

from __future__ import annotations

import logging
import marshal
from typing import Any, Callable, Mapping

from threadswoole._context import current
from threadswoole.connections.application import ApplicationProtocol
from threadswoole.constants import SWOOLE_PROCESS
from threadswoole.errors import ConfigError
from threadswoole.protocol.codec import Event, ProtocolError, register_event
from threadswoole.protocol.resp import RespBatch, RespCodec
from threadswoole.redis.commands import CommandTable

__all__ = ["RedisProtocol", "RespFailure"]

log = logging.getLogger("threadswoole")


@register_event
class RespFailure(Event):
    """PROCESS mode: the client's bytes broke the protocol after the commands delivered before
    this event; the worker writes `response` (empty: reset instead) and closes."""

    __slots__ = ("reason", "response")
    wire_id = 22

    def __init__(self, reason: str, response: bytes) -> None:
        self.reason = reason
        self.response = response

    def pack(self) -> bytes:
        return marshal.dumps((self.reason, self.response))

    @classmethod
    def unpack(cls, data: bytes) -> "RespFailure":
        return cls(*marshal.loads(data))

    def __repr__(self) -> str:
        return f"RespFailure({self.reason!r}, {self.response!r})"


class _DeferredErrorCodec(RespCodec):
    """A RespCodec whose ProtocolError becomes a `RespFailure` event after the commands before it
    (PROCESS mode, see the module docstring); after that every feed returns nothing."""

    __slots__ = ("_broken",)

    def __init__(self, **limits: Any) -> None:
        super().__init__(**limits)
        self._broken = False

    def feed(self, data: bytes) -> list[Any]:
        if self._broken:
            return []
        try:
            return super().feed(data)
        except ProtocolError as exc:
            self._broken = True
            return [*exc.events, RespFailure(exc.reason, exc.response)]


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
        self._codec_class = _DeferredErrorCodec if getattr(server, "mode", None) == SWOOLE_PROCESS else RespCodec

    def new_codec(self) -> RespCodec:
        return self._codec_class(max_bulk_length=self.max_bulk_length, batch=True)

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
            kind = type(event)
            if kind is RespBatch:
                commands = event.commands
            elif kind is RespFailure:
                failed(fd, event)
                return
            else:
                commands = [event.args]
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

        def failed(fd: int, event: RespFailure) -> None:
            runtime.counters.protocol_errors += 1
            log.info("session %d: %s; closing the connection", fd, event.reason)
            session = sessions_get(fd)
            if session is not None and session.closing:
                return  # a handler closed it already (QUIT before the bad bytes)
            if event.response:
                router.send(fd, event.response)
            router.close(fd, not event.response)

        return on_resp_event

    def close_handler(self, dispatcher: Any) -> Callable[[int], None]:
        """After the `close` callback of a RESP connection: its session (HELLO state) is dropped."""
        return self.table.forget
