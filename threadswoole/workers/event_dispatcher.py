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
        self.handlers: dict[int, Any] = {}  # port index -> its protocol's EventHandler (or None)
        for port in ports:
            self.handlers[port.index] = port.protocol.event_handler(self) if port.is_stream else None

    # -- running callbacks ----------------------------------------------------------------
    def call(self, event: str, callback: Callable[..., Any] | None, *args: Any) -> Any:
        """Run one callback; log and count an exception instead of letting it kill the loop."""
        return self.runtime.call(event, callback, *args)

    def run_request(self, event: str, callback: Callable[..., Any] | None, *args: Any) -> Any:
        """Run the callback of one request (receive, packet, request, message): counted before
        it runs (so stats() inside it includes it), max_request checked after."""
        runtime = self.runtime
        runtime.requests += 1  # (Runtime.count_request, inlined: this is every request's path)
        try:
            return callback(*args) if callback is not None else None
        except Exception:
            runtime.failed(event)
            return None
        finally:
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()

    # -- connection events ------------------------------------------------------------------
    def connect(self, port: Any, session: int, reactor_id: int) -> None:
        self.call("connect", port.on_connect, self.server, session, reactor_id)

    def receive(self, port: Any, session: int, reactor_id: int, data: bytes) -> None:
        self.run_request("receive", port.on_receive, self.server, session, reactor_id, data)

    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        """A parsed protocol event: handed to the handler of the listener's protocol."""
        handler = self.handlers.get(port.index)
        if handler is None:
            log.warning("port %d: no handler for %s events; dropped", port.index, type(event).__name__)
            return
        try:
            handler.event(port, session, reactor_id, event)
        except Exception:
            self.runtime.failed(type(event).__name__)

    def close(self, port: Any, session: int, reactor_id: int) -> None:
        self.call("close", port.on_close, self.server, session, reactor_id)
        handler = self.handlers.get(port.index)
        if handler is not None:
            handler.closed(port, session)

    def protocol_failure(self, port: Any, session: int, response: bytes) -> None:
        """The client broke the protocol after the events handed over (the reactor counted and
        logged it): the protocol's answer goes out behind their answers, then the connection
        closes. A handler still answering earlier requests (an ASGI application, a WSGI call in
        its thread) takes the answer and calls `answer_failure` when they are done."""
        handler = self.handlers.get(port.index)
        try:
            if handler is not None and handler.failed(port, session, response):
                return
        except Exception:
            self.runtime.failed("protocol_failure")
        self.answer_failure(session, response)

    def answer_failure(self, session: int, response: bytes) -> None:
        """Write a protocol error's answer and close (a reset when there is no answer)."""
        router = self.router
        if response:
            router.send(session, response)
        router.close(session, not response)

    def buffer_full(self, port: Any, session: int) -> None:
        self.call("buffer_full", port.on_buffer_full, self.server, session)

    def buffer_empty(self, port: Any, session: int) -> None:
        self.call("buffer_empty", port.on_buffer_empty, self.server, session)

    def packet(self, port: Any, data: bytes, client_info: dict) -> None:
        self.run_request("packet", port.on_packet, self.server, data, client_info)

    def pipe_message(self, src_worker_id: int, payload: bytes) -> None:
        """`send_message` from another worker: a pickled copy in every mode (contract R4)."""
        self.call("pipe_message", self.callbacks.lookup("pipe_message"), self.server, src_worker_id, pickle.loads(payload))

    def finish(self, tasks: Any, task_id: int, flags: int, payload: bytes) -> None:
        """The result of a task this worker sent (T_FINISH): the task's `finish_callback`, or
        else `on_finish` (seed 000/002: the callback replaces on_finish for that task)."""
        if tasks is None:
            return
        finished = tasks.finished(task_id, flags, payload)
        if finished is None:
            return
        data, callback = finished
        self.call("finish", callback or self.callbacks.lookup("finish"), self.server, task_id, data)

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
        self.handlers = dispatcher.handlers

    def holds_record(self, conn: Any) -> bool:
        return False  # close runs inline: the record can be retired right after it

    def on_open(self, conn: Any) -> None:
        self.dispatcher.connect(conn.listener, conn.session_id, self.reactor_id)

    def on_data(self, conn: Any, data: bytes) -> None:
        self.dispatcher.receive(conn.listener, conn.session_id, self.reactor_id, data)

    def on_event(self, conn: Any, event: Any) -> None:
        # EventDispatcher.event with the connection at hand (one frame less per request)
        held = conn.held_events
        if held is not None:
            held.append(event)  # backlogged (Host.hold_events): it runs when the answers drained
            return
        port = conn.listener
        try:
            self.handlers[port.index].event(port, conn.session_id, self.reactor_id, event)
        except Exception:
            self.inline_runtime.failed(type(event).__name__)
        if conn.out and conn.out_bytes > conn.host.backlog_limit:
            conn.host.hold_events(conn)  # the client does not read its answers: stop reading it

    def on_protocol_failure(self, conn: Any, response: bytes) -> None:
        self.dispatcher.protocol_failure(conn.listener, conn.session_id, response)

    def on_drained(self, conn: Any) -> None:
        host = conn.host
        host.reactor.defer(lambda: host.release_events(conn))  # not inside the write that drained it

    def on_closed(self, conn: Any) -> None:
        self.dispatcher.close(conn.listener, conn.session_id, self.reactor_id)

    def on_buffer_full(self, conn: Any) -> None:
        self.dispatcher.buffer_full(conn.listener, conn.session_id)

    def on_buffer_empty(self, conn: Any) -> None:
        self.dispatcher.buffer_empty(conn.listener, conn.session_id)
