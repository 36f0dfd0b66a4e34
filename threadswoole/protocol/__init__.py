"""Layer 1, sans-IO protocols: the application-protocol contract (`codec.py`) and its codecs.
May import: the standard library only (nothing else of threadswoole).

The raw-stream case of the contract is a *framer*: Swoole's ``open_eof_check`` /
``open_eof_split`` / ``open_length_check`` / ``package_length_func`` settings as pure
classes. A framer is fed the bytes of one ``recv()`` at a time and returns the complete
packets (``bytes``) found so far; it never touches sockets, threads or clocks, so the
server reactor and the client share it.

    framer = make_framer({"open_length_check": True, "package_length_type": "N",
                          "package_body_offset": 4})
    for packet in framer.feed(chunk):
        on_receive(packet)

When ``feed`` raises :class:`FramingError` the connection must be closed; the
packets completed earlier in that same call are in ``err.packets``.
"""

from __future__ import annotations

from threadswoole.protocol._factory import make_framer
from threadswoole.protocol.codec import Codec, Event, ProtocolError, Reply
from threadswoole.protocol.eof import EofCheckFramer, EofSplitFramer
from threadswoole.protocol.framer import Framer, FramingError
from threadswoole.protocol.length import LENGTH_TYPES, LengthFramer, LengthFuncFramer

__all__ = [
    "Codec",
    "ProtocolError",
    "Event",
    "Reply",
    "FramingError",
    "Framer",
    "EofCheckFramer",
    "EofSplitFramer",
    "LengthFramer",
    "LengthFuncFramer",
    "make_framer",
    "LENGTH_TYPES",
]
