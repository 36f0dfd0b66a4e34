"""The ASGI ``websocket`` scope, on threadswoole's WebSocket codec (RFC 6455).

The upgrade request is checked first (`check_request`: method, version, key): a bad one is
answered 400 without calling the application. Then ``receive()`` gives ``websocket.connect``;
``websocket.accept`` (subprotocol, headers) writes the 101 and asks the reactor that owns the
connection to switch it to the WebSocket codec (``router.switch_codec``, every mode: the codec
then reassembles messages, answers pings and echoes the client's close frame by itself), and
``websocket.close`` before accepting answers 403. Messages arrive as ``websocket.receive``
(``text`` or ``bytes``); the client's close frame, or the connection dropping (1006), as
``websocket.disconnect``. ``websocket.send`` frames the message here and writes it, waiting
while the connection is congested; ``websocket.close`` sends the close frame and closes. An
application that returns without closing gets a 1000 close; one that raises, a 1011. Once
the client is gone ``send()`` raises `ClientDisconnected` (ASGI 2.4).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from threadswoole.protocol.websocket import Close, Message, close_frame, encode_frame
from threadswoole.protocol.websocket.handshake import HandshakeError, check_request, response_101
from threadswoole.serve.asgi_http import ClientDisconnected, InputWaiter
from threadswoole.serve.head import error_page
from threadswoole.state import shared as layout
from threadswoole.websocket.status import PENDING, STATUS_ESTABLISHED, STATUS_HANDSHAKE, accepted_by, pack_deflate

log = logging.getLogger("threadswoole.serve")

__all__ = ["WebSocketCycle", "is_websocket_upgrade"]

_CONNECTING, _ACCEPTED, _CLOSED = range(3)
MAX_QUEUED_MESSAGES = 64  # unreceived messages before the connection is paused
OPCODE_TEXT, OPCODE_BINARY = 1, 2


def is_websocket_upgrade(event: Any) -> bool:
    return bool(event.upgrade) and "websocket" in event.headers.get("upgrade", "").lower()


class WebSocketCycle(InputWaiter):
    """One WebSocket connection of an ASGI application (see the module docstring)."""

    def __init__(self, handler: Any, session: int, event: Any, scope: dict) -> None:
        self.handler = handler
        self.session = session
        self.event = event
        self.scope = scope
        self.state = _CONNECTING
        self.key = ""
        self.incoming: collections.deque[dict[str, Any]] = collections.deque()
        self.connect_sent = False
        self.close_code = 1006
        self.close_reason = ""
        self.paused = False
        self.code = 101
        self.sent = 0
        self.bytes_in = 0
        self.began = time.perf_counter()
        self.finished = False
        self.close = True  # the connection is never reused for HTTP afterwards
        self.channel: Any = None
        self.task: Any = None

    def check(self) -> bytes | None:
        """The 400 answer when the upgrade request is not a valid WebSocket handshake."""
        try:
            self.key = check_request(self.event.method, self.event.headers, self.event.version)
        except HandshakeError as exc:
            return exc.response
        return None

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except Exception:
            log.exception("websocket %s: the application raised", self.event.target)
            self.handler.count_error()
            self._end(1011)
        except asyncio.CancelledError:
            self._end(1012)
            raise
        else:
            self._end(1000)
        finally:
            self.handler.websocket_done(self)

    def _end(self, code: int) -> None:
        """The application is done: reject (403), or close with `code`, if nobody did yet."""
        if self.state == _CONNECTING and not self.disconnected:
            self.code = 403 if code == 1000 else 500
            self.handler.send(self, error_page(self.code, self.handler.reactor.clock))
            self.handler.close(self)
        elif self.state == _ACCEPTED and not self.disconnected:
            self.handler.send(self, close_frame(code, b""))
            self.handler.close(self)
        self.state = _CLOSED

    # -- receive --------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self.incoming:
                message = self.incoming.popleft()
                if self.paused and len(self.incoming) <= MAX_QUEUED_MESSAGES // 4:
                    self.paused = False
                    self.handler.pause(self.session, "input", False)
                return message
            if self.disconnected:
                return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}
            await self._wait_for_input()

    def deliver(self, event: Any) -> None:
        """A codec event of this connection (the loop thread)."""
        kind = type(event)
        if kind is Message:
            self.bytes_in += len(event.data)
            if event.opcode == OPCODE_TEXT:
                self.incoming.append({"type": "websocket.receive", "text": event.data.decode("utf-8"), "bytes": None})
            else:
                self.incoming.append({"type": "websocket.receive", "bytes": event.data, "text": None})
            self.handler.websocket_message()
            if not self.paused and len(self.incoming) > MAX_QUEUED_MESSAGES:
                self.paused = True
                self.handler.pause(self.session, "input", True)
        elif kind is Close:
            self.close_code, self.close_reason = event.code, event.reason
            self.disconnected = True  # the codec answered the close frame and closes the connection
            self.state = _CLOSED
        self._wake()

    # -- send ---------------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the WebSocket client is gone")
        if kind == "websocket.send":
            if self.state != _ACCEPTED:
                raise RuntimeError("websocket.send before websocket.accept, or after websocket.close")
            text = message.get("text")
            if text is not None:
                frame = encode_frame(OPCODE_TEXT, text.encode("utf-8"))
            else:
                data = message.get("bytes")
                if data is None:
                    raise RuntimeError("websocket.send needs 'text' or 'bytes'")
                frame = encode_frame(OPCODE_BINARY, bytes(data))
            self.sent += len(frame)
            self.handler.send(self, frame)
            await self.handler.drained(self)
        elif kind == "websocket.accept":
            if self.state != _CONNECTING:
                raise RuntimeError("websocket.accept sent twice, or after websocket.close")
            self._accept(message)
        elif kind == "websocket.close":
            code = message.get("code") or 1000
            reason = message.get("reason") or ""
            if self.state == _CONNECTING:
                self.code = 403
                self.handler.send(self, error_page(403, self.handler.reactor.clock))
            elif self.state == _ACCEPTED:
                self.handler.send(self, close_frame(code, reason.encode("utf-8")[:123]))
            else:
                raise RuntimeError("websocket.close after the connection was closed")
            self.state = _CLOSED
            self.handler.close(self)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in the websocket scope")

    def _accept(self, message: dict[str, Any]) -> None:
        extra = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in message.get("headers") or ()]
        response, _headers = response_101(self.key, message.get("subprotocol"), None, extra)
        handler = self.handler
        state = handler.state
        word = state.record_base(self.session) + layout.C_WEBSOCKET_STATUS
        state.q[word] = STATUS_HANDSHAKE
        handler.send(self, response)
        # as the WebSocket server does: accepted by this worker until the owning reactor switched
        state.q[word] = STATUS_ESTABLISHED | PENDING | accepted_by(handler.worker_id)
        handler.router.switch_codec(self.session, pack_deflate(None))
        self.state = _ACCEPTED
