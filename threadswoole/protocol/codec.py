"""The application-protocol contract: one sans-IO codec per connection.

Every listener speaks an application protocol (a raw stream, EOF/length framing, HTTP/1.1,
WebSocket, RESP). For each connection the listener makes one `Codec`, owned by the reactor
that owns the connection, in every mode. The reactor feeds it the bytes of each recv() and
acts on what `feed` returns, in order:

* a packet (`bytes`, raw and framed streams) or an `Event` (an HTTP request, a WebSocket
  message, a RESP command): handed to the event dispatcher, which runs the user's callback
  (inline in BASE and THREAD; in PROCESS mode the event crosses the pipe to a worker already
  parsed, as `Event.pack()` bytes, and the worker rebuilds it with `unpack`);
* a `Reply`: bytes the codec itself wants written to the peer at once (HTTP `100 Continue`,
  a WebSocket pong, the echo of a close frame), written by the reactor with no worker
  involved; `Reply.close` asks for the connection to be closed once they are written.

`feed` raises `ProtocolError` when the input can never become valid: the reactor delivers
`error.events` (completed before the bad bytes), writes `error.response` (HTTP 400, RESP
`-ERR Protocol error: ...`, a WebSocket close frame), counts it in
`stats()['protocol_error_count']` and closes the connection. After that the codec is failed
and every further `feed` raises again.

The writer half (replies -> bytes) is a set of pure functions beside each codec, used by
whichever worker builds the reply.

A codec can be replaced on its connection (HTTP -> WebSocket upgrade): `detach()` returns the
bytes it received but did not consume, and the reactor feeds them to the next codec.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

__all__ = ["Codec", "Event", "ProtocolError", "Reply", "EVENT_TYPES", "register_event"]


class ProtocolError(ValueError):
    """Input that can never be valid; close the connection after writing `response`.

    `reason` is short and machine-readable (``"bad_request_line"``, ``"too_large"``, ...),
    `response` the protocol's own error answer (may be empty), `events` what the failing
    `feed` call completed before the bad data (the caller still delivers them).
    """

    def __init__(self, reason: str, detail: str = "", response: bytes = b"", events: Sequence[Any] = ()) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.response = response
        self.events: list[Any] = list(events)

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.detail, self.response, self.events))


class Reply:
    """Bytes a codec wants written to its peer now, by the reactor (see the module docstring)."""

    __slots__ = ("data", "close")

    def __init__(self, data: bytes, close: bool = False) -> None:
        self.data = data
        self.close = close

    def __repr__(self) -> str:
        return f"Reply({self.data[:40]!r}{'...' if len(self.data) > 40 else ''}, close={self.close})"


# wire id -> Event subclass: how a PROCESS worker turns an event's bytes back into the event.
EVENT_TYPES: dict[int, type["Event"]] = {}


def register_event(cls: type["Event"]) -> type["Event"]:
    """Class decorator: make an Event subclass known by its `wire_id` (unique, 1..63)."""
    wire_id = cls.wire_id
    if not 1 <= wire_id <= 63:
        raise ValueError(f"{cls.__name__}.wire_id must be in 1..63, got {wire_id}")
    other = EVENT_TYPES.get(wire_id)
    if other is not None and other is not cls:
        raise ValueError(f"wire_id {wire_id} is taken by {other.__name__}")
    EVENT_TYPES[wire_id] = cls
    return cls


class Event:
    """A parsed unit for the dispatcher (not used for raw packets, which are plain `bytes`).

    Subclasses use `__slots__`, set a unique `wire_id` and implement `pack`/`unpack`, so that
    PROCESS mode carries the event to a worker without parsing anything again. `pack` should
    be cheap (e.g. `marshal.dumps` of a tuple of bytes/str/int).
    """

    __slots__ = ()
    wire_id: ClassVar[int] = 0
    # True for a piece of a message whose start went before it (HTTP body chunks): where events
    # are spread over workers (dispatch_mode 1/3), it goes to the worker that has the start.
    continues_message: ClassVar[bool] = False

    def pack(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def unpack(cls, data: bytes) -> "Event":  # pragma: no cover - abstract
        raise NotImplementedError


class Codec:
    """Per-connection sans-IO protocol state: bytes in, packets / events / replies out.

    Only the owning reactor's thread calls it. No sockets, threads or clocks inside: where
    a codec needs the time (it rarely should), it is passed in.
    """

    __slots__ = ()
    protocol: ClassVar[str] = "raw"  # "raw", "http", "websocket", "redis"

    def feed(self, data: bytes) -> list[Any]:  # pragma: no cover - abstract
        """Consume the bytes of one recv(); return the packets, events and replies, in order."""
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a unit."""
        return 0

    # True while part of a message head is buffered (HTTP): reads that complete nothing then do
    # not count as activity for the heartbeat, so a head sent a byte at a time (a slowloris)
    # is closed as idle; a body arriving slowly still counts (nginx's header/body timeouts).
    reading_head: ClassVar[bool] = False

    def detach(self) -> bytes:
        """Stop using this codec; return the bytes received but not consumed (for the next)."""
        return b""
