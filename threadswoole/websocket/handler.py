"""One worker's WebSocket connections on one listener: handshakes, then messages (§9).

An upgrade request is answered here: by the built-in handshake (key, version, subprotocol,
permessage-deflate, then `open`), or by the user's `handshake(request, response)` callback
(which writes the 101 itself; True accepts, and `open` does not fire). Accepting writes the
101, records "accepted by this worker" in the connection's websocket word (so this worker may
push at once, its frames following its 101 in order) and asks the owning reactor to switch the
codec; the reactor marks the connection established when it does. A plain HTTP request on the
same port goes to `request` (400 when there is no such callback). Messages (and, when the
`open_websocket_*_frame` settings say so, pings, pongs and close frames) go to `message`.
"""

from __future__ import annotations

import time
from typing import Any

from threadswoole.http.builder import RequestBuilder
from threadswoole.http.protocol import HttpEventHandler
from threadswoole.http.response import Response
from threadswoole.protocol.http.events import HttpBodyChunk, HttpRequest
from threadswoole.protocol.websocket import Close, HandshakeError, Message, Ping, Pong, accept_handshake
from threadswoole.protocol.websocket.handshake import response_400
from threadswoole.state import shared as layout
from threadswoole.websocket.frame import CloseFrame, Frame
from threadswoole.websocket.status import COMPRESSED, PENDING, STATUS_ESTABLISHED, STATUS_HANDSHAKE, accepted_by, pack_deflate


class WebSocketEventHandler(HttpEventHandler):
    """See the module docstring."""

    def __init__(self, protocol: Any, dispatcher: Any) -> None:
        super().__init__(protocol, dispatcher)
        self.server = dispatcher.server
        self.settings = protocol.settings
        self.worker_id = dispatcher.runtime.worker_id
        self._callbacks: tuple[Any, Any, Any] | None = None  # message, open, handshake

    def _resolve(self, port: Any) -> tuple[Any, Any, Any]:
        if self._callbacks is None:
            self._callbacks = (port.callback("message"), port.callback("open"), port.callback("handshake"))
        return self._callbacks

    # -- events ---------------------------------------------------------------------------
    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        kind = type(event)
        if kind is Message:
            on_message = (self._callbacks or self._resolve(port))[0]
            runtime = self.runtime
            runtime.requests += 1  # (EventDispatcher.run_request, inlined on the message path)
            try:
                on_message(self.server, Frame(session, event.data, event.opcode, True))
            except Exception:
                runtime.failed("message")
            if runtime.requests == runtime.max_request:
                runtime.reached_max_request()
        elif kind is HttpRequest:
            if event.upgrade and event.headers.get("upgrade", "").lower() == "websocket":
                self.upgrade(port, session, event)
            else:
                if event.upgrade:
                    self.router.resume_codec(session)  # another upgrade (h2c...): plain HTTP
                self.plain_request(port, session, reactor_id, event)
        elif kind is HttpBodyChunk:
            self.body_chunk(port, session, event)
        elif kind is Close:
            frame = CloseFrame(session, event.code, event.reason)
            self.dispatcher.run_request("message", self._resolve(port)[0], self.server, frame)
        elif kind is Ping or kind is Pong:
            frame = Frame(session, event.data, 9 if kind is Ping else 10, True)
            self.dispatcher.run_request("message", self._resolve(port)[0], self.server, frame)

    def plain_request(self, port: Any, session: int, reactor_id: int, event: HttpRequest) -> None:
        if port.callback("request") is None and self.static is None:
            transport = self.connection(session).transport
            transport.send(response_400("This is a WebSocket server: send a WebSocket upgrade"))
            transport.close()
            return
        self.request_started(port, session, reactor_id, event)

    # -- the handshake ----------------------------------------------------------------------
    def upgrade(self, port: Any, session: int, event: HttpRequest) -> None:
        _on_message, on_open, on_handshake = self._resolve(port)
        connection = self.connection(session)
        transport = connection.transport
        word = self.state.record_base(session) + layout.C_WEBSOCKET_STATUS
        self.state.q[word] = STATUS_HANDSHAKE
        now = time.time()
        request = RequestBuilder(event, self.options).build(
            session, remote_addr=connection.remote_addr, remote_port=connection.remote_port,
            server_port=connection.server_port, request_time=now, master_time=int(now))
        if on_handshake is not None:
            response = Response.for_request(transport, request, self.options)
            accepted = self.dispatcher.call("handshake", on_handshake, request, response) is True
            if accepted:
                response.finish_if_open()  # the 101 the callback wrote (or left to us to end)
                self.state.q[word] = STATUS_ESTABLISHED | PENDING | accepted_by(self.worker_id)
                self.router.switch_codec(session, pack_deflate(None))
            else:
                response.finish_if_open()
                transport.close()
            request.cleanup()
            return
        try:
            shake = accept_handshake(event.method, event.headers, self.settings, event.version)
        except HandshakeError as exc:
            transport.send(exc.response)
            transport.close()
            request.cleanup()
            return
        transport.send(shake.response)
        self.state.q[word] = STATUS_ESTABLISHED | PENDING | accepted_by(self.worker_id) | (COMPRESSED if shake.deflate else 0)
        self.router.switch_codec(session, pack_deflate(shake.deflate))
        self.dispatcher.call("open", on_open, self.server, request)
        request.cleanup()
