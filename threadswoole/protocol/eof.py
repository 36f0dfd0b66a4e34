"""EOF-delimited framers: Swoole's ``open_eof_check`` and ``open_eof_split``."""

from __future__ import annotations

from threadswoole.protocol.framer import Framer


def _check_eof(eof: bytes) -> bytes:
    if isinstance(eof, str):
        eof = eof.encode("utf-8")
    if not isinstance(eof, (bytes, bytearray, memoryview)):
        raise ValueError(f"package_eof must be bytes or str, got {type(eof).__name__}")
    eof = bytes(eof)
    if not 1 <= len(eof) <= 8:
        raise ValueError(f"package_eof must be 1 to 8 bytes long, got {len(eof)} ({eof!r})")
    return eof


class EofCheckFramer(Framer):
    """``open_eof_check``: deliver the whole buffer once it *ends with* ``eof`` (Swoole only checks the tail).

    A delivered packet may therefore hold several EOF-terminated messages; it
    always includes its trailing eof.  A buffer longer than ``max_length`` is
    a ``too_large`` error (even if it ends with eof, so that the outcome never
    depends on how the stream was cut).
    """

    __slots__ = ("eof",)

    def __init__(self, eof: bytes, max_length: int) -> None:
        super().__init__(max_length)
        self.eof = _check_eof(eof)

    def feed(self, data: bytes) -> list[bytes]:
        if self._idle:
            # Hot path: nothing buffered and ``data`` is one complete packet.
            if data.endswith(self.eof) and len(data) <= self.max_length and type(data) is bytes:
                return [data]
            if not data:
                return []
        elif self._failed is not None:
            raise self._refail()
        buf = self._buf
        buf += data
        self._idle = False
        if len(buf) > self.max_length:
            raise self._fail(
                "too_large", f"{len(buf)} bytes without a final eof exceed package_max_length {self.max_length}"
            )
        if not buf.endswith(self.eof):
            return []
        packet = bytes(buf)
        self._buf = bytearray()  # release the memory of a large packet
        self._idle = True
        return [packet]


class EofSplitFramer(Framer):
    """``open_eof_split``: split the stream at every ``eof``; each packet is one message including its eof.

    Bytes after the last eof stay buffered; the search resumes where the last
    one stopped (minus ``len(eof) - 1`` for an eof cut across two feeds), so a
    message trickling in byte by byte costs O(len(message)) in total.  A
    message or a buffered remainder longer than ``max_length`` is ``too_large``.
    """

    __slots__ = ("eof", "_eof_len", "_scan")

    def __init__(self, eof: bytes, max_length: int) -> None:
        super().__init__(max_length)
        self.eof = _check_eof(eof)
        self._eof_len = len(self.eof)
        self._scan = 0  # offset in _buf where the next eof search starts

    def reset(self) -> None:
        super().reset()
        self._scan = 0

    def feed(self, data: bytes) -> list[bytes]:
        if self._idle:
            # Hot path: nothing buffered and ``data`` is exactly one message.
            n = len(data)
            if data.find(self.eof) == n - self._eof_len and n >= self._eof_len and n <= self.max_length:
                if type(data) is bytes:
                    return [data]
            elif not n:
                return []
            if type(data) is not bytes:
                data = bytes(data)
            return self._cut(data, 0)
        if self._failed is not None:
            raise self._refail()
        buf = self._buf
        buf += data
        if buf.find(self.eof, self._scan) >= 0:
            return self._cut(buf, self._scan)
        # Still no eof: O(len(data) + len(eof)) per feed, however long the message.
        n = len(buf)
        if n > self.max_length:
            raise self._fail("too_large", f"{n} bytes without eof exceed package_max_length {self.max_length}")
        self._scan = n - self._eof_len + 1 if n >= self._eof_len else 0
        return []

    def _cut(self, src: bytes | bytearray, scan: int) -> list[bytes]:
        """Split ``src`` (the fed data when idle, else the buffer) from offset ``scan`` on."""
        eof = self.eof
        le = self._eof_len
        mx = self.max_length
        find = src.find
        spans: list[tuple[int, int]] = []
        pos = 0
        i = find(eof, scan)
        while i >= 0:
            end = i + le
            if end - pos > mx:
                raise self._fail(
                    "too_large",
                    f"{end - pos}-byte message exceeds package_max_length {mx}",
                    self._take(src, spans),
                )
            spans.append((pos, end))
            pos = end
            i = find(eof, end)
        rest = len(src) - pos
        if rest > mx:
            raise self._fail(
                "too_large",
                f"{rest} bytes without eof exceed package_max_length {mx}",
                self._take(src, spans),
            )
        packets = self._take(src, spans)
        self._keep(src, pos)
        self._scan = rest - le + 1 if rest >= le else 0
        return packets
