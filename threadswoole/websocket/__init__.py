"""threadswoole.websocket: Swoole's WebSocket server (api.md §9).

`Server` is an HTTP server whose main port accepts the WebSocket upgrade; `Frame` /
`CloseFrame` are what ``on_message`` receives; `pack` / `unpack` build and parse single
frames (``Server.pack`` / ``Server.unpack`` are these functions).
"""

from threadswoole.websocket.frame import CloseFrame, Frame, pack, unpack
from threadswoole.websocket.server import Server

__all__ = ["Server", "Frame", "CloseFrame", "pack", "unpack"]
