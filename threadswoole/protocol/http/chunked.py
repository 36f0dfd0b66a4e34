"""Incremental decoder of a chunked request body (RFC 9112 §7.1), trailers included.

Fed the same growing buffer by the codec, it consumes what it can and reports where it
stopped, so a chunk-size line or the CRLF after a chunk may arrive split anywhere. Strict:

* chunk-size is 1 to 16 hex digits (more would overflow 64 bits; leading zeros count);
  no sign, no whitespace, no ``_``;
* extensions follow ``*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )``, at
  most `max_extension` bytes, and are ignored; whitespace after the size without a ``;`` is 400;
* chunk data must be followed by exactly CRLF;
* the de-chunked total may not exceed `max_body_size` (400, checked on each chunk-size line,
  before its data is read);
* trailers are parsed like headers (`parse_fields`), at most `max_trailer_size` bytes; fields
  that change framing or routing are 400.
"""

from __future__ import annotations

import re

from threadswoole.protocol.http.errors import MessageError
from threadswoole.protocol.http.head import BARE_LINE_ENDING, parse_fields

__all__ = ["ChunkedDecoder"]

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXTENSION = rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:" + _EXTENSION + rb")*)")

_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedDecoder:
    """State of one chunked body; `decode` is called with the codec's buffer and a start offset."""

    __slots__ = ("max_body_size", "max_extension", "max_trailer_size", "max_trailers",
                 "total", "trailers", "_state", "_remaining")

    def __init__(self, max_body_size: int, max_extension: int, max_trailer_size: int, max_trailers: int) -> None:
        self.max_body_size = max_body_size
        self.max_extension = max_extension
        self.max_trailer_size = max_trailer_size
        self.max_trailers = max_trailers
        self.total = 0  # de-chunked bytes so far
        self.trailers: dict[str, str] | None = None
        self._state = _SIZE
        self._remaining = 0

    def decode(self, src: bytes | bytearray, pos: int, parts: list[bytes]) -> tuple[int, bool]:
        """Consume `src[pos:]`; append body bytes to `parts`; return (new pos, body finished)."""
        n = len(src)
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                parts.append(src[pos:pos + take] if type(src) is bytes else bytes(src[pos:pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                self._state = _DATA_END
            elif state == _SIZE:
                eol = src.find(b"\r\n", pos)
                if eol < 0:
                    self._check_line(src, pos, n)
                    break
                size = self._size(src, pos, eol)
                pos = eol + 2
                if size == 0:
                    self._state = _TRAILER
                    continue
                self.total += size
                if self.total > self.max_body_size:
                    raise MessageError(400, "body_too_large",
                                       f"chunked body over package_max_length {self.max_body_size}")
                self._remaining = size
                self._state = _DATA
            elif state == _DATA_END:
                if n - pos < 2:
                    if src[pos] != 13:
                        raise MessageError(400, "bad_chunk_end", "chunk data not followed by CRLF")
                    break
                if src[pos] != 13 or src[pos + 1] != 10:
                    raise MessageError(400, "bad_chunk_end", "chunk data not followed by CRLF")
                pos += 2
                self._state = _SIZE
            else:  # _TRAILER
                if src[pos] == 10:
                    raise MessageError(400, "bare_line_ending", "bare LF after the last chunk")
                if src[pos] == 13 and n - pos >= 2:
                    if src[pos + 1] != 10:
                        raise MessageError(400, "bare_line_ending", "bare CR after the last chunk")
                    return pos + 2, True
                end = src.find(b"\r\n\r\n", pos)
                limit = pos + self.max_trailer_size
                if end < 0 or end + 4 > limit:
                    # As for heads: a bare CR/LF before the size limit, then the limit.
                    if BARE_LINE_ENDING.search(src, pos, limit):
                        raise MessageError(400, "bare_line_ending", "bare CR or LF in the trailer section")
                    if end >= 0 or n >= limit:
                        raise MessageError(400, "trailers_too_large", f"trailer section over {self.max_trailer_size} bytes")
                    break
                self.trailers = parse_fields(bytes(src[pos:end + 4]), max_fields=self.max_trailers)
                return end + 4, True
        return pos, False

    # A chunk-size line is checked the same way complete (`_size`) and partial
    # (`_check_line`): the error at the lowest offset wins, so that the reason never depends
    # on how the bytes were split -- the first byte, then a bare CR/LF before the length
    # limit, then the length limit, then (complete lines only) the grammar.
    def _size(self, src: bytes | bytearray, pos: int, eol: int) -> int:
        self._check_line(src, pos, eol + 1)
        line = bytes(src[pos:eol])
        if len(line) > 16 + self.max_extension:
            raise MessageError(400, "chunk_extension_too_long", "chunk-size line too long")
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            if _LONG_SIZE.match(line):
                raise MessageError(400, "chunk_size_overflow", f"chunk size {line[:40]!r} has more than 16 hex digits")
            raise MessageError(400, "bad_chunk_size", f"chunk-size line {line[:60]!r}")
        if len(match.group(2)) > self.max_extension:
            raise MessageError(400, "chunk_extension_too_long", f"chunk extensions over {self.max_extension} bytes")
        return int(match.group(1), 16)

    def _check_line(self, src: bytes | bytearray, pos: int, end: int) -> None:
        """Fail on a chunk-size line (``src[pos:end]``, maybe incomplete) that can not become valid."""
        first = src[pos]
        if first == 10:
            raise MessageError(400, "bare_line_ending", "bare LF in a chunk-size line")
        if first not in _HEX:
            raise MessageError(400, "bad_chunk_size", f"chunk-size line starts with {bytes(src[pos:pos + 1])!r}")
        # The line may hold 16 digits + max_extension bytes of extensions (";" included); with
        # one byte more than that plus a CR present (`end` counts the CR of the CRLF on a
        # complete line) it is too long.
        limit = pos + 16 + self.max_extension + 2
        if BARE_LINE_ENDING.search(src, pos, min(end, limit)):
            raise MessageError(400, "bare_line_ending", "bare CR or LF in a chunk-size line")
        if end >= limit:
            raise MessageError(400, "chunk_extension_too_long", "chunk-size line too long")


_HEX = frozenset(b"0123456789abcdefABCDEF")
_LONG_SIZE = re.compile(rb"[0-9A-Fa-f]{17}")
