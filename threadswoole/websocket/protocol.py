"""The WebSocket application protocol of a listener: HTTP until a handshake, then RFC 6455.

A connection starts with the HTTP codec, which holds the bytes after an upgrade request. The
worker decides the handshake (built in, or the user's `handshake` callback), writes the 101,
marks the connection established in its shared record, and asks the reactor that owns the
connection to switch codecs (`codec_for_switch`), in every mode. From then on the reactor's
WebSocket codec reassembles, inflates and validates messages, answers pings and echoes close
frames by itself, and the worker gets whole messages.

The record's websocket word holds the status (1 connection, 2 handshake, 3 established,
4 closing) and COMPRESSED when permessage-deflate was negotiated: then only the connection's
own codec can frame what is pushed to it (its compressor keeps context), so `push()` from any
worker goes to the owning reactor as a PUSH operation; otherwise the worker frames it itself.
"""

from __future__ import annotations

import marshal
from typing import Any, Mapping

from threadswoole.http.protocol import HttpProtocol
from threadswoole.protocol import Codec
from threadswoole.protocol.websocket import MessageEncoder, WebSocketCodec, make_codec
from threadswoole.state import shared as layout
from threadswoole.websocket.handler import WebSocketEventHandler
from threadswoole.websocket.status import COMPRESSED, STATUS_ESTABLISHED, unpack_deflate

class ServerWebSocketCodec(WebSocketCodec):
    """The reactor's codec of an established connection, with the writer that pushes through
    it when frames must be compressed in order (the PUSH operation)."""

    __slots__ = ("encoder",)

    def encode_push(self, payload: bytes) -> bytes:
        opcode, data, finish = marshal.loads(payload)
        return self.encoder.encode(opcode, data, finish)


class WebSocketProtocol(HttpProtocol):
    """HTTP/1.1 with the WebSocket upgrade; `settings` are the listener's effective settings."""

    name = "websocket"
    hold_upgrade = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.settings = dict(settings)

    def codec_for_switch(self, spec: bytes) -> Codec:
        deflate = unpack_deflate(spec)
        codec = make_codec(self.settings, deflate, codec_class=ServerWebSocketCodec)
        codec.encoder = MessageEncoder(deflate)
        return codec

    def codec_switched(self, words: Any, record: int, codec: Codec) -> None:
        """The reactor made the connection a WebSocket: established from here on."""
        deflate = getattr(codec, "deflate", None)
        words[record + layout.C_WEBSOCKET_STATUS] = STATUS_ESTABLISHED | (COMPRESSED if deflate is not None else 0)

    def event_handler(self, dispatcher: Any) -> WebSocketEventHandler:
        return WebSocketEventHandler(self, dispatcher)

    def required_callback(self) -> str | None:
        return "message"
