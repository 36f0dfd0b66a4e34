"""threadswoole.websocket: the WebSocket server's public objects (api.md §9).

`Frame` / `CloseFrame` are what ``on_message`` receives; `pack` / `unpack` build and parse
single frames (``Server.pack`` / ``Server.unpack`` are these functions).
"""

from threadswoole.websocket.frame import CloseFrame, Frame, pack, unpack

__all__ = ["Frame", "CloseFrame", "pack", "unpack"]
