"""WSGI on a listener: the protocol (the HTTP/1.1 codec) and one worker's request handler.

`WsgiProtocol` is what the ``application_protocol`` setting of a `serve` listener builds: each
connection gets the same `HttpCodec` as the native HTTP server, in whichever reactor owns it
(every mode), and each worker gets a `WsgiHandler`, which turns the codec's events into PEP
3333 calls. Those run in the worker's loop thread when the request is whole; a request whose
body streams runs in the worker's application thread (see `app_thread` for why and what it
costs), fed by `HttpBodyChunk` events through a `StreamInput`.

A worker runs one application call at a time. While a call runs in the application thread,
the events of other requests wait here in arrival order and their connections are paused
(so what waits stays small); body chunks of the running call go straight to its input. When
a call ends without reading all of its body, the rest is read and dropped (up to
`SKIP_LIMIT` bytes, so the connection can stay alive) or the connection is closed.
"""

from __future__ import annotations

import collections
import io
import time
from typing import Any, Mapping

from threadswoole._context import current
from threadswoole.connections.application import ProtocolFailure
from threadswoole.http.protocol import HttpProtocol
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.serve.app_thread import AppThread
from threadswoole.serve.body import StreamInput
from threadswoole.serve.channel import Channel
from threadswoole.serve.environ import EnvironBuilder
from threadswoole.serve.head import HeadCaches
from threadswoole.serve.options import ServeOptions, connection_facts
from threadswoole.serve.pauses import PauseReasons
from threadswoole.serve.wsgi_response import WsgiExchange

__all__ = ["WsgiProtocol", "WsgiHandler"]

SKIP_LIMIT = 1024 * 1024  # unread body bytes dropped after a response before closing instead
MAX_KEPT_CONNECTIONS = 65536


class WsgiProtocol(HttpProtocol):
    """HTTP/1.1 whose requests go to a WSGI application; built once per listener at start()."""

    name = "wsgi"
    hold_upgrade = False

    def __init__(self, settings: Mapping[str, Any], *, app: Any, options: ServeOptions) -> None:
        super().__init__(settings)
        self.app = app
        self.serve_options = options
        self.tls = bool(settings.get("ssl_cert_file"))

    def event_handler(self, dispatcher: Any) -> "WsgiHandler":
        return WsgiHandler(self, dispatcher)

    def required_callback(self) -> str | None:
        return None


class WsgiHandler:
    """One worker's WSGI requests on one listener (see the module docstring)."""

    def __init__(self, protocol: WsgiProtocol, dispatcher: Any) -> None:
        options = protocol.serve_options
        self.app = protocol.app
        self.options = options
        self.dispatcher = dispatcher
        self.runtime = dispatcher.runtime
        self.router = dispatcher.router
        self.state = dispatcher.router.state
        self.tls = protocol.tls
        self.environ = EnvironBuilder(scheme="https" if protocol.tls else "http", server_name=options.server_name,
                                      server_port=0, root_path=options.root_path,
                                      multithread=options.multithread, multiprocess=options.multiprocess)
        self.head_caches = HeadCaches()  # this worker's checked statuses and header lists
        self.connections: dict[int, dict[str, Any]] = {}  # session -> its environ base
        # session -> (its last head's bytes, the environ template they gave): see request()
        self.last_environ: dict[int, tuple[bytes, dict[str, Any]]] = {}
        self.channels: dict[int, Channel] = {}
        self.active: WsgiExchange | None = None  # the call running in the application thread
        self.waiting: collections.deque[tuple[Any, int, Any]] = collections.deque()
        self.pauses = PauseReasons(self.router)  # why a connection is paused ("waiting", "input")
        self.skipping: dict[int, int] = {}  # session -> unread body bytes still allowed to drop
        self.app_thread = AppThread(f"wsgi-app-{self.runtime.worker_id}")
        self.recorder: Any = None  # this worker's metrics / access-log recorder (bound on first use)
        self.stopping = False
        self.send_now: Any = None  # Server.send's fast path of this worker (bound on first use)
        self.reactor: Any = None  # this worker's loop (bound on first use)

    # -- events from the dispatcher ---------------------------------------------------------
    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        if self.active is not None or self.waiting:
            if type(event) is HttpBodyChunk and session not in self._waiting_sessions() and self._chunk(session, event):
                return
            self.waiting.append((port, session, event))
            self.pauses.set(session, "waiting", True)
            return
        if type(event) is HttpRequest:
            self.request(session, event)
        elif type(event) is HttpBodyChunk:
            self._chunk(session, event)

    def request(self, session: int, event: HttpRequest) -> None:
        if self.send_now is None:
            self._bind()
        # (the start time is for the metrics/access-log recorder only)
        exchange = WsgiExchange(self, session, event, time.perf_counter() if self.recorder is not None else 0.0)
        if event.complete:
            # the connection repeating its last head (keep-alive clients do) gets a copy of the
            # environ that head gave, without the connection base + head part merge
            last = self.last_environ.get(session)
            if last is None or last[0] != event.head:
                base = self.connections.get(session) or self._connection(session)
                last = self.last_environ[session] = (event.head, self.environ.template(base, event))
            environ = last[1].copy()
            environ["wsgi.input"] = io.BytesIO(event.body)
            # EventDispatcher.run_request inlined (count, call, max_request), as
            # connections/hot_path.py does for `receive`: in THREAD mode every instruction
            # here is held under the GIL that 32 workers share (docs/serve.md, Performance)
            runtime = self.runtime
            runtime.requests += 1
            try:
                if exchange.call(self.app, environ) and (self.channels or self.recorder is not None):
                    self._finished(exchange)
            except Exception:
                runtime.failed("request")
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()
            return
        # the body streams: the call runs in the application thread, fed from here
        base = self.connections.get(session) or self._connection(session)
        self.runtime.count_request()
        reactor = self.reactor
        stream = StreamInput(event.body, pause=lambda on: reactor.post(self.pauses.set, session, "input", on),
                             timeout=self.options.body_timeout)
        exchange.input = stream
        exchange.channel = self.open_channel(session)
        exchange.channel.threaded = True
        self.active = exchange
        environ = self.environ.build(base, event, stream)
        self.app_thread.submit(lambda: exchange.call_in_thread(self.app, environ))

    def _chunk(self, session: int, chunk: HttpBodyChunk) -> bool:
        """Body of the running call (to its input) or of one whose rest is dropped; False:
        neither (the caller queues it)."""
        active = self.active
        if active is not None and active.session == session and active.input is not None and not active.input.complete:
            active.input.feed(chunk.data, chunk.final)
            active.bytes_in += len(chunk.data)
            return True
        budget = self.skipping.get(session)
        if budget is None:
            return active is None  # (stray: the request was refused or its connection reset)
        budget -= len(chunk.data)
        if chunk.final:
            del self.skipping[session]
        elif budget < 0:
            del self.skipping[session]
            self.router.close(session, True)
        else:
            self.skipping[session] = budget
        return True

    def closed(self, port: Any, session: int) -> None:
        self.connections.pop(session, None)
        self.last_environ.pop(session, None)
        self.skipping.pop(session, None)
        self.pauses.forget(session)
        channel = self.channels.pop(session, None)
        if channel is not None:
            channel.disconnected()
        active = self.active
        if active is not None and active.session == session and active.input is not None:
            active.input.fail("connection closed")
        if self.waiting and session in self._waiting_sessions():
            self.waiting = collections.deque(item for item in self.waiting if item[1] != session)

    def failed(self, port: Any, session: int, response: bytes) -> bool:
        """A bad request behind a call of this connection's that is still running or waiting:
        its answer waits its turn with them (see _drain)."""
        active = self.active
        if (active is None or active.session != session) and session not in self._waiting_sessions():
            return False
        self.waiting.append((port, session, ProtocolFailure(response)))
        return True

    # -- the application thread's side ---------------------------------------------------------
    def hand_over(self, exchange: WsgiExchange) -> None:
        """In the loop thread: the peer fell behind; the iteration goes on in the app thread."""
        exchange.channel.threaded = True
        self.active = exchange
        self.app_thread.submit(exchange.continue_in_thread)

    def exchange_done(self, exchange: WsgiExchange) -> None:
        """From the application thread: the call is over; the rest happens in the loop."""
        self.reactor.post(self._thread_finished, exchange)

    def _thread_finished(self, exchange: WsgiExchange) -> None:
        self.active = None
        stream = exchange.input
        session = exchange.session
        if stream is not None and not stream.complete and not exchange.close and session in self.connections:
            self.skipping[session] = SKIP_LIMIT  # the application did not read all of its body
        self.pauses.set(session, "input", False)
        self._finished(exchange)
        self.runtime.check_max_request()
        self._drain()

    def _drain(self) -> None:
        """Handle what waited, in order, until a call goes to the application thread again."""
        waiting = self.waiting
        while waiting:
            if self.active is not None:
                session = self.active.session
                rest = collections.deque()
                for item in waiting:  # chunks of the running call's body go to its input now
                    if item[1] != session or type(item[2]) is not HttpBodyChunk or not self._chunk(session, item[2]):
                        rest.append(item)
                self.waiting = waiting = rest
                break
            _port, session, event = waiting.popleft()
            if type(event) is HttpRequest:
                self.request(session, event)
            elif type(event) is ProtocolFailure:
                self.dispatcher.answer_failure(session, event.response)
            else:
                self._chunk(session, event)
        queued = self._waiting_sessions()
        for session in [s for s in self.pauses.paused_for("waiting") if s not in queued]:
            self.pauses.set(session, "waiting", False)

    # -- helpers the exchanges use ----------------------------------------------------------------
    def send(self, session: int, data: bytes) -> bool:
        return self.send_now(session, data)

    def clock(self) -> float:
        return self.reactor.clock

    def open_channel(self, session: int) -> Channel:
        channel = self.channels.get(session)
        if channel is None or channel.broken:
            settings = self.dispatcher.server.setting
            channel = Channel(self.router, self.reactor, session, max_send=settings["buffer_output_size"],
                              stall_timeout=self.options.send_timeout)
            self.channels[session] = channel
        return channel

    def count_error(self, threaded: bool) -> None:
        if threaded:
            self.reactor.post(self._count_error)
        else:
            self._count_error()

    def _count_error(self) -> None:
        self.runtime.counters.callback_errors += 1

    def _finished(self, exchange: WsgiExchange) -> None:
        channel = self.channels.get(exchange.session)
        if channel is not None and channel.idle and not channel.closing:
            del self.channels[exchange.session]
        recorder = self.recorder
        if recorder is not None:
            recorder.record(exchange.code, time.perf_counter() - exchange.started, exchange.bytes_in, exchange.body_sent)
            if recorder.access_log is not None:
                event = exchange.event
                remote = self.connections.get(exchange.session, {}).get("REMOTE_ADDR", "")
                recorder.access_log.write(self.reactor.clock, remote, f"{event.method} {event.target} HTTP/{event.version}",
                                          exchange.code, exchange.body_sent, event.headers)

    def stop(self) -> None:
        """worker_stop: end the application thread (its call, if any, lost its connection)."""
        self.stopping = True
        self.app_thread.stop(self.options.graceful_timeout)

    # -- internals --------------------------------------------------------------------------------
    def _bind(self) -> None:
        """On the first request, in the worker's thread: its send path, loop and side."""
        ctx = current()
        self.send_now, self.reactor = ctx.send_function, ctx.loop
        side = self.options.side()
        self.recorder = side.recorder
        side.stoppers.append(self.stop)

    def _waiting_sessions(self) -> set[int]:
        return {item[1] for item in self.waiting}

    def _connection(self, session: int) -> dict[str, Any]:
        if len(self.connections) >= MAX_KEPT_CONNECTIONS:
            self.connections.clear()
            self.last_environ.clear()  # (its keys are always in connections)
        remote_addr, remote_port, server_port = connection_facts(self.state, session)
        base = self.connections[session] = self.environ.for_connection(remote_addr, remote_port, server_port)
        return base
