"""ASGI 3 on a listener: the protocol (HTTP/1.1 with the WebSocket upgrade) and one worker's
handler, which turns the codec's events into ``http`` and ``websocket`` scopes.

`AsgiProtocol` is the WebSocket server's protocol (the HTTP codec holds the bytes after an
upgrade request; ``codec_for_switch`` builds the reactor's WebSocket codec) with its own
handler. Each request is an `HttpCycle` or a `WebSocketCycle` whose ``app(scope, receive,
send)`` coroutine runs as a task of the worker's asyncio loop, started eagerly in the event
handler (`asgi_loop`). One cycle per connection at a time: a pipelined request waits until
the response before it is complete (its connection paused); a body the application did not
read is dropped afterwards (up to `SKIP_LIMIT` bytes) or the connection closes.

The scope's invariant part (method, paths, query, headers as byte pairs) is cached by the
request head's raw bytes, as WSGI's environ is; each request gets its own copy and header list.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Mapping
from urllib.parse import unquote

from threadswoole._context import current
from threadswoole.connections.application import ProtocolFailure
from threadswoole.errors import ErrorCode
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.serve.asgi_http import HttpCycle
from threadswoole.serve.asgi_runtime import ASGI_VERSION
from threadswoole.serve.asgi_websocket import WebSocketCycle, is_websocket_upgrade
from threadswoole.serve.channel import Channel
from threadswoole.serve.head import HeadCaches
from threadswoole.serve.options import ServeOptions, connection_facts
from threadswoole.serve.pauses import PauseReasons
from threadswoole.websocket.protocol import WebSocketProtocol

__all__ = ["AsgiProtocol", "AsgiHandler"]

SKIP_LIMIT = 1024 * 1024
_NO_OPTIONS: dict = {}  # the (empty, never written) value of the pathsend extension
_CACHE_LIMIT = 1024


class AsgiProtocol(WebSocketProtocol):
    """HTTP/1.1 + WebSocket whose requests go to an ASGI application."""

    name = "asgi"

    def __init__(self, settings: Mapping[str, Any], *, app: Any, options: ServeOptions) -> None:
        super().__init__(settings)
        self.app = app
        self.serve_options = options
        self.tls = bool(settings.get("ssl_cert_file"))
        # the WebSocket codec after an upgrade: --ws-max-size, close frames delivered (ASGI
        # reports the client's close code), no permessage-deflate
        self.settings.update(package_max_length=options.ws_max_size, open_websocket_close_frame=True,
                             websocket_compression=False)

    def event_handler(self, dispatcher: Any) -> "AsgiHandler":
        return AsgiHandler(self, dispatcher)

    def required_callback(self) -> str | None:
        return None


class AsgiHandler:
    """One worker's ASGI connections on one listener (see the module docstring)."""

    def __init__(self, protocol: AsgiProtocol, dispatcher: Any) -> None:
        self.app = protocol.app
        self.options = protocol.serve_options
        self.dispatcher = dispatcher
        self.runtime = dispatcher.runtime
        self.router = dispatcher.router
        self.state = dispatcher.router.state
        self.worker_id = dispatcher.runtime.worker_id
        self.scheme = "https" if protocol.tls else "http"
        self.root_path = self.options.root_path.rstrip("/")
        self.head_caches = HeadCaches()  # this worker's checked header lists (serve/head.py)
        self.cycles: dict[int, Any] = {}  # session -> the cycle whose response is not complete
        self.queued: dict[int, collections.deque] = {}  # session -> events waiting for that
        self.channels: dict[int, Channel] = {}
        self.skipping: dict[int, int] = {}
        self.pauses = PauseReasons(self.router)
        self.peers: dict[int, tuple[Any, Any]] = {}  # session -> (client, server)
        self._heads: dict[bytes, tuple[dict[str, Any], tuple]] = {}
        self.stopping = False
        self.asgi: Any = None  # the worker's AsgiRuntime (bound on the first event)
        self.loop: Any = None
        self.recorder: Any = None
        self._send: Any = None
        self.reactor: Any = None  # the worker's Reactor (its `clock` dates the responses)

    # -- events ---------------------------------------------------------------------------------
    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        cycle = self.cycles.get(session)
        if cycle is not None:
            kind = type(event)
            if kind is HttpBodyChunk:
                if type(cycle) is HttpCycle and cycle.more_body:
                    cycle.feed(event.data, event.final)
                    return
            elif kind is not HttpRequest:
                if type(cycle) is WebSocketCycle:
                    cycle.deliver(event)
                return
            self._queue(session, event, port)
            return
        if session in self.queued:
            self._queue(session, event, port)
            return
        self._start(port, session, event)

    def _queue(self, session: int, event: Any, port: Any) -> None:
        self.queued.setdefault(session, collections.deque()).append((port, event))
        self.pause(session, "queued", True)

    def _start(self, port: Any, session: int, event: Any) -> None:
        if type(event) is not HttpRequest:
            if type(event) is HttpBodyChunk:
                self._skip(session, event)
            elif type(event) is ProtocolFailure:
                self.dispatcher.answer_failure(session, event.response)
            return
        if self._send is None:
            self._bind()
        if event.upgrade:
            if is_websocket_upgrade(event):
                self._websocket(port, session, event)
                return
            self.router.resume_codec(session)  # h2c or another protocol: answered as plain HTTP
        self.runtime.requests += 1  # Runtime.count_request, inline (the hot path's own counter)
        cycle = HttpCycle(self, session, event, self._scope(port, session, event))
        self.cycles[session] = cycle
        cycle.start(self.app)

    def _websocket(self, port: Any, session: int, event: HttpRequest) -> None:
        self.runtime.count_request()
        scope = self._scope(port, session, event, websocket=True)
        cycle = WebSocketCycle(self, session, event, scope)
        refusal = cycle.check()
        if refusal is not None:
            self._send(session, refusal)
            self.router.close(session, False)
            return
        self.cycles[session] = cycle
        self.asgi.start(cycle.run(self.app))  # (the task is not kept on the cycle: no reference cycle)  # (not kept on the cycle: no reference cycle to collect)

    def _skip(self, session: int, chunk: HttpBodyChunk) -> None:
        budget = self.skipping.get(session)
        if budget is None:
            return
        budget -= len(chunk.data)
        if chunk.final:
            del self.skipping[session]
        elif budget < 0:
            del self.skipping[session]
            self.router.close(session, True)
        else:
            self.skipping[session] = budget

    def closed(self, port: Any, session: int) -> None:
        cycle = self.cycles.pop(session, None)
        if cycle is not None:
            cycle.disconnect()
        self.queued.pop(session, None)
        self.skipping.pop(session, None)
        self.pauses.forget(session)
        self.peers.pop(session, None)
        channel = self.channels.pop(session, None)
        if channel is not None:
            channel.disconnected()

    def failed(self, port: Any, session: int, response: bytes) -> bool:
        """A bad request behind one the application is still answering: its answer waits in
        the connection's queue and goes out after that response (a WebSocket's close frame
        goes at once: its cycle lasts as long as the connection)."""
        cycle = self.cycles.get(session)
        if type(cycle) is WebSocketCycle or (cycle is None and session not in self.queued):
            return False
        self._queue(session, ProtocolFailure(response), port)
        return True

    # -- what the cycles call ---------------------------------------------------------------------
    def send(self, cycle: Any, data: bytes) -> None:
        session = cycle.session
        channel = cycle.channel
        if channel is None and self.channels:
            channel = self.channels.get(session)
        if channel is None or (channel.idle and not channel.closing):
            if self._send(session, data):
                return
            code = current().last_error
            if code != ErrorCode.OUTPUT_BUFFER_OVERFLOW and code != ErrorCode.DATA_LENGTH_TOO_LARGE:
                cycle.disconnect()
                return
            channel = self.open_channel(session)
        cycle.channel = channel
        if not channel.send(data):
            cycle.disconnect()

    async def drained(self, cycle: Any) -> None:
        """Wait while the connection is congested (returns at once when it is not)."""
        channel = cycle.channel
        if channel is None or not channel.congested:
            return
        future = self.loop.create_future()
        channel.when_drained(lambda: future.done() or future.set_result(None))
        await future
        if channel.broken:
            cycle.disconnect()

    def sendfile(self, cycle: Any, path: str, size: int) -> None:
        channel = cycle.channel or self.channels.get(cycle.session)
        if channel is not None and not channel.idle:
            with open(path, "rb") as file:  # output waits: keep the order, send the bytes
                while True:
                    data = file.read(256 * 1024)
                    if not data:
                        return
                    channel.send(data)
        self.router.sendfile(cycle.session, path, 0, size)

    def close(self, cycle: Any) -> None:
        channel = cycle.channel or self.channels.get(cycle.session)
        if channel is not None and not channel.idle:
            channel.close_when_done()
        else:
            self.router.close(cycle.session, False)

    def response_done(self, cycle: Any) -> None:
        """The response is complete: account for it; the connection may take its next request."""
        if cycle.finished:
            return
        cycle.finished = True
        session = cycle.session
        cycles = self.cycles
        if cycles.get(session) is cycle:
            del cycles[session]
        if cycle.close:
            self.close(cycle)
        elif cycle.more_body and not cycle.disconnected:
            self.skipping[session] = SKIP_LIMIT  # the application did not read all of its body
        if self.pauses:
            self.pause(session, "input", False)
        if self.channels:
            channel = self.channels.get(session)
            if channel is not None and channel.idle and not channel.closing:
                del self.channels[session]
        if self.recorder is not None:
            self._account(cycle)
        self.runtime.check_max_request()
        if self.queued and session in self.queued and not cycle.close:
            self.reactor.defer(lambda: self._next(session))

    def websocket_done(self, cycle: Any) -> None:
        """A WebSocket application returned: the connection's cycle is over."""
        if not cycle.finished:
            cycle.finished = True
            if self.cycles.get(cycle.session) is cycle:
                del self.cycles[cycle.session]
            if self.recorder is not None:
                self._account(cycle)
            self.runtime.check_max_request()

    def _next(self, session: int) -> None:
        queue = self.queued.get(session)
        while queue and session not in self.cycles:
            port, event = queue.popleft()
            self._start(port, session, event)
        if not queue:
            self.queued.pop(session, None)
            self.pause(session, "queued", False)

    def websocket_message(self) -> None:
        if self.recorder is not None:
            self.recorder.websocket_message()

    def count_error(self) -> None:
        self.runtime.counters.callback_errors += 1

    def open_channel(self, session: int) -> Channel:
        channel = self.channels.get(session)
        if channel is None or channel.broken:
            channel = Channel(self.router, self.reactor, session,
                              max_send=self.dispatcher.server.setting["buffer_output_size"],
                              stall_timeout=self.options.send_timeout)
            self.channels[session] = channel
        return channel

    def pause(self, session: int, reason: str, on: bool) -> None:
        """What the cycles call to pause or resume their connection's input (see PauseReasons)."""
        self.pauses.set(session, reason, on)

    def stop(self) -> None:
        self.stopping = True

    # -- internals ----------------------------------------------------------------------------------
    def _bind(self) -> None:
        ctx = current()
        self._send, self.reactor = ctx.send_function, ctx.loop
        side = self.options.side()
        self.asgi = side.asgi
        self.loop = side.asgi.loop
        self.recorder = side.recorder
        side.stoppers.append(self.stop)

    def _account(self, cycle: Any) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        recorder.record(cycle.code, time.perf_counter() - cycle.began, cycle.bytes_in, cycle.sent)
        if recorder.access_log is not None:
            event = cycle.event
            client = self.peers.get(cycle.session, (None, None))[0]
            recorder.access_log.write(self.reactor.clock, client[0] if client else "",
                                      f"{event.method} {event.target} HTTP/{event.version}", cycle.code, cycle.sent,
                                      event.headers)

    def _peers(self, port: Any, session: int) -> tuple[Any, Any]:
        known = self.peers.get(session)
        if known is None:
            if len(self.peers) >= 65536:
                self.peers.clear()
            remote, remote_port, server_port = connection_facts(self.state, session)
            client = (remote, remote_port) if remote else None
            server = (port.host, server_port) if server_port else (port.host, None)
            known = self.peers[session] = (client, server)
        return known

    def _scope(self, port: Any, session: int, event: HttpRequest, websocket: bool = False) -> dict[str, Any]:
        cached = None if websocket else self._heads.get(event.head)
        if cached is None:
            cached = self._head_part(event, websocket)
        part, headers = cached
        scope = part.copy()
        scope["headers"] = list(headers)
        scope["client"], scope["server"] = self._peers(port, session)
        if not websocket:
            scope["extensions"] = {"http.response.pathsend": _NO_OPTIONS}
        state = self.asgi.state
        if state:
            scope["state"] = state.copy()
        return scope

    def _head_part(self, event: HttpRequest, websocket: bool) -> tuple[dict[str, Any], tuple]:
        raw_path = event.path.encode("utf-8", "surrogateescape")
        path = unquote(event.path) if "%" in event.path else event.path
        root = self.root_path
        if root and not (path == root or path.startswith(root + "/")):
            path, raw_path = root + path, root.encode("utf-8") + raw_path  # uvicorn's convention
        part: dict[str, Any] = {
            "type": "websocket" if websocket else "http",
            "asgi": ASGI_VERSION,
            "http_version": event.version,
            "scheme": ("wss" if self.scheme == "https" else "ws") if websocket else self.scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": event.query.encode("latin-1", "replace"),
            "root_path": root,
        }
        if websocket:
            offered = event.headers.get("sec-websocket-protocol", "")
            part["subprotocols"] = [name.strip() for name in offered.split(",") if name.strip()]
        else:
            part["method"] = event.method
        headers = tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in event.headers.items())
        entry = (part, headers)
        if not websocket:
            if len(self._heads) >= _CACHE_LIMIT:
                self._heads.clear()
            self._heads[event.head] = entry
        return entry
