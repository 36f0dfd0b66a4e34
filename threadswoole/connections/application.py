"""The application protocol of a listener: which codec each connection gets, and who handles
its events.

`Port.prepare()` picks one per listener from its settings (a raw stream with or without
EOF/length framing; HTTP, WebSocket and RESP come from their packages). The reactor that owns a
connection calls `new_codec()` when it adopts the socket and `codec_for_switch()` when a worker
asks for an upgrade (HTTP -> WebSocket). The worker that runs callbacks calls `event_handler()`
once at start: the function the event dispatcher calls for this protocol's parsed events.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from threadswoole.protocol import Codec, make_framer


class EventHandler(Protocol):
    """A protocol's events, in one worker: what the event dispatcher hands them to."""

    def event(self, port: Any, session: int, reactor_id: int, event: Any) -> None:
        """One parsed event of a connection on `port` (runs the user's callbacks)."""

    def closed(self, port: Any, session: int) -> None:
        """The connection is gone (after its `close` callback): forget what was kept for it."""

    def failed(self, port: Any, session: int, response: bytes) -> bool:
        """The client broke the protocol behind the events handed over. True: this handler is
        still answering some of them and will write `response` after them, then close (through
        the dispatcher's `answer_failure`); False: answer it now."""


class ProtocolFailure:
    """A protocol error's answer queued behind a connection's unfinished requests (see
    `EventHandler.failed`): handlers that answer later keep it in their queue of events."""

    __slots__ = ("response",)

    def __init__(self, response: bytes) -> None:
        self.response = response


class ApplicationProtocol:
    """A raw stream: no codec at all (the hot path), or a framer cutting it into packets."""

    name = "raw"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self._framer_settings = dict(settings or {})
        # raises ValueError for bad framing settings (checked once here, at start())
        self.framed = make_framer(self._framer_settings) is not None

    def new_codec(self) -> Codec | None:
        """A fresh codec for a new connection; None means plain bytes, delivered as they come."""
        if not self.framed:
            return None
        return make_framer(self._framer_settings)

    def codec_for_switch(self, spec: bytes) -> Codec:
        """The codec a worker asked this connection to switch to (SWITCH_CODEC's payload)."""
        raise ValueError(f"the {self.name} protocol cannot switch codecs")

    def codec_switched(self, words: Any, record: int, codec: Codec) -> None:
        """After a switch, in the owning reactor: record what the new codec means in the
        connection's shared record (`words[record + ...]`); nothing for a raw stream."""

    def event_handler(self, dispatcher: Any) -> EventHandler | None:
        """For a worker: the handler of this protocol's events (raw streams have none)."""
        return None

    def required_callback(self) -> str | None:
        """The callback a listener of this protocol cannot run without (checked at start())."""
        return "receive"
