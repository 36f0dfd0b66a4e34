"""The event dispatcher: the one place where a worker turns events into the user's callbacks.

Connection events (connect, receive, close, buffer_full/empty), datagrams (packet), pipe
messages and every application protocol's parsed events (an HTTP request, a WebSocket
message, a RESP command) arrive here, from the inline sink in BASE and THREAD modes and from
the mailbox in PROCESS workers, and leave as callback calls. A protocol plugs in through its
listener's `ApplicationProtocol.event_handler(dispatcher)`: the handler it returns is called
with (port, session, reactor_id, event) and uses `run_request` / `call` below to run callbacks,
and `router` to answer.

(The one other place a callback runs is the inline hot path for raw packets, see
connections/hot_path.py: a measured, documented copy of `receive` below.)
"""

from __future__ import annotations

import logging
import pickle
from typing import Any, Callable

log = logging.getLogger("threadswoole")


class EventDispatcher:
    """Callbacks of one worker, by event; `router` is how the callbacks' answers go out."""

    def __init__(self, server: Any, runtime: Any, router: Any, ports: list[Any], callbacks: Any) -> None:
        self.server = server
        self.runtime = runtime
        self.router = router
        self.ports = ports
        self.callbacks = callbacks  # the server's callback table (lookup by canonical name)
        self._handlers: dict[int, Callable[..., Any] | None] = {}
        self._closers: dict[int, Callable[[int], Any]] = {}  # the protocols' per-connection cleanup
        for port in ports:
            self._handlers[port.index] = port.protocol.event_handler(self)
            closer = port.protocol.close_handler(self)
            if closer is not None:
                self._closers[port.index] = closer

    # -- running callbacks ----------------------------------------------------------------
    def call(self, event: str, callback: Callable[..., Any] | None, *args: Any) -> Any:
        """Run one callback; log and count an exception instead of letting it kill the loop."""
        return self.runtime.call(event, callback, *args)

    def run_request(self, event: str, callback: Callable[..., Any] | None, *args: Any) -> Any:
        """Run the callback of one request (receive, packet, request, message): counted before
        it runs (so stats() inside it includes it), max_request checked after."""
        runtime = self.runtime
        runtime.count_request()
        try:
            result = runtime.call(event, callback, *args)
        finally:
            runtime.check_max_request()
        return result

    # -- connection events ------------------------------------------------------------------
    def connect(self, port: Any, session: int, reactor_id: int) -> None:
        self.call("connect", port.on_connect, self.server, session, reactor_id)

    def receive(self, port: Any, session: int, reactor_id: int, data: bytes) -> None:
        self.run_request("receive", port.on_receive, self.server, session, reactor_id, data)

    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        """A parsed protocol event: handed to the handler of the listener's protocol."""
        handler = self._handlers.get(port.index)
        if handler is None:
            log.warning("port %d: no handler for %s events; dropped", port.index, type(event).__name__)
            return
        try:
            handler(port, session, reactor_id, event)
        except Exception:
            self.runtime.failed(getattr(event, "callback_name", type(event).__name__))

    def close(self, port: Any, session: int, reactor_id: int) -> None:
        self.call("close", port.on_close, self.server, session, reactor_id)
        closer = self._closers.get(port.index)
        if closer is not None:
            closer(session)

    def buffer_full(self, port: Any, session: int) -> None:
        self.call("buffer_full", port.on_buffer_full, self.server, session)

    def buffer_empty(self, port: Any, session: int) -> None:
        self.call("buffer_empty", port.on_buffer_empty, self.server, session)

    def packet(self, port: Any, data: bytes, client_info: dict) -> None:
        self.run_request("packet", port.on_packet, self.server, data, client_info)

    def pipe_message(self, src_worker_id: int, payload: bytes) -> None:
        """`send_message` from another worker: a pickled copy in every mode (contract R4)."""
        self.call("pipe_message", self.callbacks.lookup("pipe_message"), self.server, src_worker_id, pickle.loads(payload))

    # -- worker lifecycle -----------------------------------------------------------------
    def worker_start(self, worker_id: int) -> None:
        self.call("worker_start", self.callbacks.lookup("worker_start"), self.server, worker_id)

    def worker_stop(self, worker_id: int) -> None:
        self.call("worker_stop", self.callbacks.lookup("worker_stop"), self.server, worker_id)

    def worker_exit(self, worker_id: int) -> None:
        self.call("worker_exit", self.callbacks.lookup("worker_exit"), self.server, worker_id)


class InlineSink:
    """BASE and THREAD modes: a Host's connection events run the callbacks right in the reactor."""

    def __init__(self, dispatcher: EventDispatcher, reactor_id: int) -> None:
        self.dispatcher = dispatcher
        self.inline_runtime = dispatcher.runtime  # the hot path runs `receive` inline with it
        self.server = dispatcher.server
        self.reactor_id = reactor_id

    def holds_record(self, conn: Any) -> bool:
        return False  # close runs inline: the record can be retired right after it

    def on_open(self, conn: Any) -> None:
        self.dispatcher.connect(conn.listener, conn.session_id, self.reactor_id)

    def on_data(self, conn: Any, data: bytes) -> None:
        self.dispatcher.receive(conn.listener, conn.session_id, self.reactor_id, data)

    def on_event(self, conn: Any, event: Any) -> None:
        self.dispatcher.event(conn.listener, conn.session_id, self.reactor_id, event)

    def on_closed(self, conn: Any) -> None:
        self.dispatcher.close(conn.listener, conn.session_id, self.reactor_id)

    def on_buffer_full(self, conn: Any) -> None:
        self.dispatcher.buffer_full(conn.listener, conn.session_id)

    def on_buffer_empty(self, conn: Any) -> None:
        self.dispatcher.buffer_empty(conn.listener, conn.session_id)
