"""The raw-stream case of the codec contract: a framer cuts a byte stream into packets (Swoole's
open_eof_check / open_eof_split / open_length_check / package_length_func), and the error it
raises for input that can never become a packet."""

from __future__ import annotations

from typing import Sequence

from threadswoole.protocol.codec import Codec, ProtocolError


class FramingError(ProtocolError):
    """Input that can never become a valid packet; the server closes that connection (no answer).

    ``reason`` is short and machine-readable: ``"too_large"``, ``"bad_length"``
    or ``"length_func"`` (or ``"failed"`` when feeding a framer that has already
    failed).  ``packets`` holds the packets that were completed by the failing
    ``feed`` call before the bad data was met (a caller may still deliver them).
    """

    def __init__(self, reason: str, detail: str = "", packets: Sequence[bytes] = ()) -> None:
        super().__init__(reason, detail, b"", packets)

    @property
    def packets(self) -> list[bytes]:
        """The packets completed before the bad data (the codec contract's `events`)."""
        return self.events

    def __reduce__(self) -> tuple[type[FramingError], tuple[str, str, list[bytes]]]:
        return (type(self), (self.reason, self.detail, self.packets))


class Framer(Codec):
    """Base class of the framers: cuts a TCP byte stream into packets, sans-IO (a raw codec).

    ``feed(data)`` appends ``data`` (the bytes of one recv) and returns the
    complete packets, in order (possibly none).  ``buffered`` is the number of
    bytes held while waiting for the rest of a packet, ``reset()`` drops them
    (and clears the failed state).  After ``feed`` raised :class:`FramingError`
    the framer is *failed*: its buffer is released and every further ``feed``
    raises :class:`FramingError` again.
    """

    # _idle is True iff the buffer is empty and the framer has not failed: the
    # one attribute the hot path of ``feed`` has to test.
    __slots__ = ("_buf", "_failed", "_idle", "max_length")

    def __init__(self, max_length: int) -> None:
        if type(max_length) is not int or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        self.max_length = max_length
        self._buf = bytearray()
        self._failed: FramingError | None = None
        self._idle = True

    def feed(self, data: bytes) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a packet."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        """True once ``feed`` has raised :class:`FramingError` (until ``reset``)."""
        return self._failed is not None

    def detach(self) -> bytes:
        """The bytes held for an incomplete packet (the codec contract's hand-over)."""
        held = bytes(self._buf)
        self.reset()
        return held

    def reset(self) -> None:
        """Drop the buffered bytes and forget a previous failure."""
        self._buf = bytearray()
        self._failed = None
        self._idle = True

    # -- helpers for subclasses -------------------------------------------------
    def _fail(self, reason: str, detail: str, packets: Sequence[bytes] = ()) -> FramingError:
        """Enter the failed state, release the buffer, return the error to raise."""
        self._buf = bytearray()
        self._idle = False
        self._failed = FramingError(reason, detail)
        return FramingError(reason, detail, packets)

    def _refail(self) -> FramingError:
        """The error to raise when a failed framer is fed again."""
        prev = self._failed
        assert prev is not None
        return FramingError(prev.reason, f"framer already failed ({prev})")

    @staticmethod
    def _take(src: bytes | bytearray, spans: list[tuple[int, int]]) -> list[bytes]:
        """Copy the ``(start, end)`` spans of ``src`` out as ``bytes`` packets."""
        if type(src) is bytes:
            return [src[a:b] for a, b in spans]  # full-range slice returns src itself
        with memoryview(src) as view:
            return [view[a:b].tobytes() for a, b in spans]

    def _keep(self, src: bytes | bytearray, pos: int) -> None:
        """Keep ``src[pos:]`` buffered (``src`` is the fed data or the buffer itself)."""
        buf = self._buf
        if src is buf:
            if pos == len(buf):
                self._buf = bytearray()  # release the memory of a large packet
            elif pos:
                del buf[:pos]
        elif pos < len(src):
            buf += memoryview(src)[pos:]
        self._idle = not self._buf
