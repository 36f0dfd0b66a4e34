"""The WebSocket protocol layer (RFC 6455, RFC 7692 permessage-deflate), sans-IO.

* `WebSocketCodec`: the reader of one connection (bytes -> `Message`, `Ping`, `Pong`,
  `Close` events and `Reply` objects; `ProtocolError` carrying the close frame to send).
* `MessageEncoder`, `encode_frame`, `close_frame`: the writer.
* `handshake`: the HTTP Upgrade (validation, Sec-WebSocket-Accept, subprotocol and
  extension choice, the 101 / 400 responses).
* `deflate`: permessage-deflate negotiation and compression contexts.
* `make_codec` / `accept_handshake`: the same, configured from a listener's Swoole settings.
"""

from threadswoole.protocol.websocket.frames import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_CONTINUATION,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    apply_mask,
    close_frame,
    close_payload,
    encode_frame,
    is_valid_close_code,
    parse_close_payload,
)
from threadswoole.protocol.websocket.deflate import DeflateParameters, negotiate
from threadswoole.protocol.websocket.events import Close, Message, Ping, Pong
from threadswoole.protocol.websocket.codec import DEFAULT_MAX_MESSAGE_SIZE, WebSocketCodec
from threadswoole.protocol.websocket.encoder import MessageEncoder
from threadswoole.protocol.websocket.handshake import Handshake, HandshakeError, server_handshake
from threadswoole.protocol.websocket.settings import accept_handshake, make_codec

__all__ = [
    "WebSocketCodec", "MessageEncoder", "DeflateParameters", "negotiate", "make_codec", "accept_handshake",
    "Handshake", "HandshakeError", "server_handshake",
    "Message", "Ping", "Pong", "Close", "DEFAULT_MAX_MESSAGE_SIZE",
    "encode_frame", "close_frame", "close_payload", "parse_close_payload", "apply_mask", "is_valid_close_code",
    "OPCODE_CONTINUATION", "OPCODE_TEXT", "OPCODE_BINARY", "OPCODE_CLOSE", "OPCODE_PING", "OPCODE_PONG",
    "CLOSE_NORMAL", "CLOSE_PROTOCOL_ERROR", "CLOSE_NO_STATUS", "CLOSE_INVALID_PAYLOAD", "CLOSE_MESSAGE_TOO_BIG",
]
