"""The HTTP/1.1 application protocol of a listener: its codec, and its requests in a worker.

`HttpProtocol` is what `Port.prepare()` picks for a listener with `open_http_protocol`: each
connection gets an `HttpCodec` in the reactor that owns it (in every mode), and each worker
gets an `HttpEventHandler`, which turns the codec's events into `Request`/`Response` pairs
and runs `on_request`, then ends the response if the handler did not (contract §8 auto-end).
In PROCESS mode the events reach the worker already parsed; the handler is the same.

A body that streams (longer than the codec buffers whole) is collected by a RequestBuilder,
which writes file parts of a multipart upload straight to temp files; the handler keeps one
builder per connection while its body arrives, and drops it (deleting the temp files) if the
connection goes first.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from threadswoole._context import current
from threadswoole.connections.application import ApplicationProtocol
from threadswoole.http.builder import RequestBuilder
from threadswoole.http.options import HttpOptions
from threadswoole.http.request import Request
from threadswoole.http.response import Response
from threadswoole.http.session import SessionTransport
from threadswoole.http.static import StaticFiles
from threadswoole.protocol import Codec
from threadswoole.protocol.http import HttpCodec
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.state import shared as layout

MAX_KEPT_CONNECTIONS = 65536  # per worker; close events can be missing (dispatch modes 1, 3)


class HttpProtocol(ApplicationProtocol):
    """HTTP/1.1 on a listener; `settings` are the listener's effective settings."""

    name = "http"
    hold_upgrade = False  # a WebSocket listener holds the bytes after an upgrade request

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.options = HttpOptions.from_settings(settings)
        self.static = StaticFiles.from_options(self.options)
        self._max_body_size = int(settings.get("package_max_length") or self.options.package_max_length)
        HttpCodec(max_body_size=self._max_body_size)  # bad limits fail here, at start()

    def new_codec(self) -> Codec:
        return HttpCodec(max_body_size=self._max_body_size, hold_upgrade=self.hold_upgrade)

    def event_handler(self, dispatcher: Any) -> "HttpEventHandler":
        return HttpEventHandler(self, dispatcher)

    def required_callback(self) -> str | None:
        return "request"


class _Connection:
    """What one worker keeps about a connection it serves: the transport and its facts (the
    `peer` of each of its Requests)."""

    __slots__ = ("transport", "remote_addr", "remote_port", "server_port")

    def __init__(self, transport: SessionTransport, remote_addr: str, remote_port: int, server_port: int) -> None:
        self.transport = transport
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.server_port = server_port


class _WallClock:
    """A reactor's `clock` where there is no reactor: the wall clock, read when asked."""

    @property
    def clock(self) -> float:
        return time.time()


class HttpEventHandler:
    """One worker's HTTP requests on one listener (see the module docstring)."""

    def __init__(self, protocol: HttpProtocol, dispatcher: Any) -> None:
        self.protocol = protocol
        self.dispatcher = dispatcher
        self.router = dispatcher.router
        self.state = dispatcher.router.state
        self.options = protocol.options
        self.static = protocol.static
        self.builders: dict[int, RequestBuilder | None] = {}  # session -> its streaming body (None: discard)
        self.connections: dict[int, _Connection] = {}
        self.runtime = dispatcher.runtime
        self.whole_body_limit = self.options.upload_max_filesize  # a longer one may need a 413 first
        # a whole request within this is answered by event() itself (-1: static files are looked up first)
        self.direct_body_limit = self.whole_body_limit if self.static is None else -1
        # Request.of_connection and Response.of_event bound once: a classmethod looked up on its
        # class builds a new bound method each time (about 370 instructions per request for both)
        self._request_of = Request.of_connection
        self._response_of = Response.of_event
        self._on_request: Any = None
        self._reactor: Any = None  # the worker's reactor (its clock stamps the requests)
        self._resolved = False

    # -- events ---------------------------------------------------------------------------
    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        """The common case, a whole request (its body, if any, parsed lazily by the Request),
        is answered right here: on_request, then the auto-end (§8); the same steps as
        `respond`, without a RequestBuilder, in one frame (a `respond_now` method called from
        here cost about 750 instructions more per request: callgrind, cghttp.sh). The rest
        (static files, streaming bodies, body chunks) goes to `other_event`.

        The request time is the worker's reactor clock (read once per loop iteration, right
        after the poll that saw the request's bytes), not a clock call per request."""
        if type(event) is not HttpRequest or not event.complete or len(event.body) > self.direct_body_limit:
            self.other_event(port, session, reactor_id, event)
            return
        connection = self.connections.get(session) or self.connection(session)
        if not self._resolved:
            self._bind_to_worker(port)
        options = self.options
        request = self._request_of(event, session, connection, self._reactor.clock, options)
        response = self._response_of(connection.transport, session, event, options)
        runtime = self.runtime
        runtime.requests += 1  # (EventDispatcher.run_request, inlined on the request path)
        try:
            self._on_request(request, response)
        except Exception:
            runtime.failed("request")
            response.fail_if_open()
        finally:
            response.conclude(request)  # auto-end; a detached request keeps its files
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()

    def other_event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        """A request that needs a RequestBuilder (a static file first, or a streaming body),
        or a chunk of a streaming body."""
        kind = type(event)
        if kind is HttpRequest:
            self.request_started(port, session, reactor_id, event)
        elif kind is HttpBodyChunk:
            self.body_chunk(port, session, event)

    def _bind_to_worker(self, port: Any) -> None:
        """At the first request, in the running worker: its `request` callback and its reactor."""
        self._on_request = port.callback("request")
        self._reactor = current().loop or _WallClock()  # (every worker runs a reactor)
        self._resolved = True

    def request_started(self, port: Any, session: int, reactor_id: int, event: HttpRequest) -> None:
        connection = self.connection(session)
        if self.static is not None and self.static.serve(event, connection.transport):
            if not event.complete:
                self.builders[session] = None  # the body of a request answered from disk
            return
        builder = RequestBuilder(event, self.options)
        if builder.complete:
            self.respond(port, session, builder, connection)
        else:
            self.builders[session] = builder

    def body_chunk(self, port: Any, session: int, chunk: HttpBodyChunk) -> None:
        if session not in self.builders:
            return  # the connection's request was dropped (it closed, or it was refused)
        builder = self.builders[session]
        if builder is None:
            if chunk.final:
                del self.builders[session]
            return
        if builder.feed(chunk):
            del self.builders[session]
            self.respond(port, session, builder, self.connection(session))

    def respond(self, port: Any, session: int, builder: RequestBuilder, connection: _Connection) -> None:
        """A whole request: on_request(request, response), then the auto-end (§8)."""
        transport = connection.transport
        if builder.rejected is not None:  # an upload over upload_max_filesize: 413, no callback
            transport.send(builder.rejected)
            transport.close()
            builder.abort()
            return
        now = time.time()
        request = builder.build(session, remote_addr=connection.remote_addr, remote_port=connection.remote_port,
                                server_port=connection.server_port, request_time=now, master_time=int(now))
        response = Response.for_request(transport, request, self.options)
        if not self._resolved:
            self._bind_to_worker(port)
        runtime = self.runtime
        runtime.requests += 1  # (EventDispatcher.run_request, with the 500 of a handler that raised)
        try:
            self._on_request(request, response)
        except Exception:
            runtime.failed("request")
            response.fail_if_open()
        finally:
            response.conclude(request)  # auto-end; a detached request keeps its files
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()

    def closed(self, port: Any, session: int) -> None:
        builder = self.builders.pop(session, None)
        if builder is not None:
            builder.abort()  # temp files of an upload that never completed
        self.connections.pop(session, None)

    def failed(self, port: Any, session: int, response: bytes) -> bool:
        return False  # requests are answered before the next event is handled: answer it now

    # -- per-connection facts -------------------------------------------------------------
    def connection(self, session: int) -> _Connection:
        """The transport and the peer's address for `session` (read once from its record)."""
        known = self.connections.get(session)
        if known is not None:
            return known
        if len(self.connections) >= MAX_KEPT_CONNECTIONS:
            self.connections.clear()
        q = self.state.q
        base = self.state.record_base(session)
        remote_addr = layout.unpack_ip(q[base + layout.C_FAMILY], q[base + layout.C_IP_HIGH], q[base + layout.C_IP_LOW])
        # SessionTransport takes this worker's Server.send fast path from the context now, while
        # the worker runs: when the handler was built (before the worker bound its context) a
        # BASE worker restarted in-process still had its predecessor's, whose sends go nowhere.
        known = _Connection(SessionTransport(self.router, session), remote_addr, q[base + layout.C_REMOTE_PORT], q[base + layout.C_SERVER_PORT])
        self.connections[session] = known
        return known
