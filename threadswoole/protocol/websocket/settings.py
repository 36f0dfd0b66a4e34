"""From a listener's Swoole settings to the WebSocket objects of one connection.

    shake = accept_handshake("GET", request_headers, settings)      # or HandshakeError (400)
    send(shake.response)
    codec = make_codec(settings, shake.deflate)                     # replaces the HTTP codec
    encoder = MessageEncoder(shake.deflate)                         # the reactor's writer
"""

from __future__ import annotations

from typing import Any, Mapping

from threadswoole.protocol.websocket.codec import DEFAULT_MAX_MESSAGE_SIZE, WebSocketCodec
from threadswoole.protocol.websocket.deflate import DeflateParameters
from threadswoole.protocol.websocket.handshake import Handshake, server_handshake

__all__ = ["make_codec", "accept_handshake"]


def make_codec(settings: Mapping[str, Any], deflate: DeflateParameters | None = None, codec_class: type[WebSocketCodec] = WebSocketCodec) -> WebSocketCodec:
    """The server-side codec for a connection whose handshake negotiated `deflate`.

    package_max_length bounds a message; open_websocket_ping_frame / pong_frame / close_frame
    make those frames `Ping` / `Pong` / `Close` events for on_message. `codec_class` may be a
    subclass that adds what the server needs (its own writer, say).
    """
    return codec_class(
        max_message_size=settings.get("package_max_length", DEFAULT_MAX_MESSAGE_SIZE),
        deflate=deflate,
        deliver_ping=bool(settings.get("open_websocket_ping_frame", False)),
        deliver_pong=bool(settings.get("open_websocket_pong_frame", False)),
        deliver_close=bool(settings.get("open_websocket_close_frame", False)),
    )


def accept_handshake(
    method: str, headers: Mapping[str, str], settings: Mapping[str, Any], http_version: str = "1.1",
    extra_headers: Any = (),
) -> Handshake:
    """`server_handshake` with websocket_subprotocol and websocket_compression from `settings`."""
    return server_handshake(
        method, headers, http_version=http_version,
        subprotocol=settings.get("websocket_subprotocol") or None,
        compression=bool(settings.get("websocket_compression", False)),
        extra_headers=extra_headers,
    )
