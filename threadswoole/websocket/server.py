"""`threadswoole.websocket.Server`: Swoole's WebSocket server, an HTTP server whose main port
accepts the WebSocket upgrade (contract §9): `on("message", fn(server, frame))`, `push()`.

`push` works from any event worker, task worker or user process, in every mode, to any
established connection: the frame is built once, here, unless the connection compresses
(permessage-deflate keeps a compressor per connection: then the owning reactor frames it).
"""

from __future__ import annotations

import marshal
from typing import Any

from threadswoole._aliases import alias
from threadswoole._arguments import as_bytes, check_session
from threadswoole._context import current, set_error
from threadswoole.constants import WEBSOCKET_OPCODE_TEXT
from threadswoole.errors import ErrorCode
from threadswoole.http.server import HTTP_PORT_KEYS
from threadswoole.http.server import Server as HttpServer
from threadswoole.protocol.websocket import close_frame, encode_frame, is_valid_close_code
from threadswoole.state import shared as layout
from threadswoole.websocket import frame as frames
from threadswoole.websocket.status import ACCEPTED_SHIFT, COMPRESSED, PENDING, STATUS_CLOSING, STATUS_ESTABLISHED, STATUS_MASK

WEBSOCKET_PORT_KEYS = HTTP_PORT_KEYS | {
    "open_websocket_protocol", "websocket_subprotocol", "websocket_compression",
    "open_websocket_close_frame", "open_websocket_ping_frame", "open_websocket_pong_frame",
}
PUSH_OPCODES = frozenset({0, 1, 2, 8, 9, 10})


class Server(HttpServer):
    """A WebSocket server (and an HTTP server on the same port); see the README's example."""

    protocol_flag = "open_websocket_protocol"
    port_keys = WEBSOCKET_PORT_KEYS
    isEstablished = alias("is_established")

    # -- the connection's websocket word ---------------------------------------------------
    def _word(self, router: Any, session: int) -> int:
        """The websocket word of a live session (0 when it is not live)."""
        state = router.state
        if not state.alive(session):
            return 0
        return state.q[state.record_base(session) + layout.C_WEBSOCKET_STATUS]

    @staticmethod
    def _through_reactor(word: int) -> bool:
        """Must the owning reactor frame this push? With compression (its compressor keeps
        context), and while the switch is pending for any worker but the one that accepted
        (the reactor holds it until then, so it cannot precede the 101)."""
        if word & COMPRESSED:
            return True
        return bool(word & PENDING) and word >> ACCEPTED_SHIFT != current().worker_id + 1

    # -- the §9 methods -------------------------------------------------------------------
    def push(self, fd: int, data: Any, opcode: int = WEBSOCKET_OPCODE_TEXT, finish: bool = True) -> bool:
        """Send one message (or fragment, with finish=False) to an established connection;
        False with 8501 when `fd` is not one, 8502 for a bad opcode, 1202 when too large."""
        ctx = current()
        router = ctx.router
        if router is not None and type(fd) is int and type(data) is bytes and fd > 0 and opcode in PUSH_OPCODES:
            # The common case in one frame: bytes to an established, uncompressed connection
            # (the record read as state.record_base / alive would), framed here, sent through
            # the worker's Server.send fast path. Anything else takes _push below.
            state = router.state
            q = state.q
            base = state.conns_base + (fd - 1) % state.capacity * layout.CONN_WORDS
            if q[base] == fd and q[base + layout.C_WEBSOCKET_STATUS] == STATUS_ESTABLISHED and not q[base + layout.C_FLAGS] & layout.FLAG_CLOSING \
                    and len(data) <= self.setting["buffer_output_size"]:
                frame = encode_frame(opcode, data, fin=bool(finish))
                send = ctx.send_function
                return send(fd, frame) if send is not None else router.send(fd, frame)
        return self._push(fd, data, opcode, finish)

    def _push(self, fd: int, data: Any, opcode: int, finish: bool) -> bool:
        router = self._router("push")
        session = check_session(fd)
        payload = as_bytes(data)
        if isinstance(opcode, bool) or not isinstance(opcode, int):
            raise TypeError("opcode must be an int")
        if opcode not in PUSH_OPCODES:
            return set_error(ErrorCode.WEBSOCKET_BAD_OPCODE)
        word = self._word(router, session)
        if word & STATUS_MASK != STATUS_ESTABLISHED:
            return set_error(ErrorCode.WEBSOCKET_BAD_CLIENT)
        if len(payload) > self.setting["buffer_output_size"]:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        if self._through_reactor(word):
            return router.push(session, marshal.dumps((int(opcode), payload, bool(finish))))
        return router.send(session, encode_frame(opcode, payload, fin=bool(finish)))

    def exist(self, fd: int) -> bool:
        """Seed 003: the connection exists AND its handshake is complete (plain existence:
        threadswoole.Server.exist(server, fd))."""
        router = self._router("exist")
        return self._word(router, check_session(fd)) & STATUS_MASK == STATUS_ESTABLISHED

    def is_established(self, fd: int) -> bool:
        return self.exist(fd)

    def disconnect(self, fd: int, code: int = 1000, reason: str = "") -> bool:
        """Close an established connection with a close frame; False for a code other than
        1000 or 4000-4999, a reason over 123 bytes, or a connection that is not established."""
        router = self._router("disconnect")
        session = check_session(fd)
        if isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 4000 <= code <= 4999) or not is_valid_close_code(code):
            return set_error(ErrorCode.WEBSOCKET_BAD_OPCODE)
        encoded = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
        if len(encoded) > 123:
            return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
        word = self._word(router, session)
        if word & STATUS_MASK != STATUS_ESTABLISHED:
            return set_error(ErrorCode.WEBSOCKET_BAD_CLIENT)
        state = router.state
        state.q[state.record_base(session) + layout.C_WEBSOCKET_STATUS] = STATUS_CLOSING | (word & COMPRESSED)
        if not router.send(session, close_frame(code, encoded)):
            return False
        return router.close(session, False)

    pack = staticmethod(frames.pack)
    unpack = staticmethod(frames.unpack)
