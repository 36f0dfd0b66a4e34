"""Incremental sans-IO ``multipart/form-data`` parser (RFC 7578), fed body chunks as they arrive.

    parser = MultipartParser(boundary)
    for event in parser.feed(chunk):     # as many times as there are chunks
        ...                              # PartBegin, bytes (part data), PartEnd
    parser.finish()                      # raises MultipartError if the body was cut short

Part data comes out as plain `bytes` items between a `PartBegin` and its `PartEnd`, as soon
as they can no longer be the start of a delimiter, so a large file part never has to be held
in memory. The body is read as if it started with CRLF, so the first delimiter and all the
others are the same ``CRLF--boundary``. Preamble and epilogue are ignored; part headers are
limited to `max_header_size` bytes, parts to `max_parts`.
"""

from __future__ import annotations

from typing import Union

from threadswoole.protocol.http.forms import parse_options

__all__ = ["MultipartError", "MultipartParser", "PartBegin", "PartEnd", "boundary_of"]


class MultipartError(ValueError):
    """A multipart body that can not be parsed further (the parts read so far stand)."""


class PartBegin:
    """A part starts: its headers (lower-cased names, values decoded UTF-8) and form fields.

    `name` is the ``Content-Disposition`` ``name`` (``""`` if absent); `filename` is None for
    a plain field and the client's file name (path components removed) for a file part;
    `content_type` is the part's ``Content-Type`` (``""`` if absent).
    """

    __slots__ = ("headers", "name", "filename", "content_type")

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        _, params = parse_options(headers.get("content-disposition", ""))
        self.name = params.get("name", "")
        filename = params.get("filename")
        if filename is not None:
            # Old browsers send the full client path; PHP and Swoole keep the base name only.
            filename = filename.replace("\\", "/").rpartition("/")[2]
        self.filename = filename
        self.content_type = headers.get("content-type", "")

    def __repr__(self) -> str:
        return f"PartBegin(name={self.name!r}, filename={self.filename!r})"


class PartEnd:
    """The current part is complete."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PartEnd()"


PART_END = PartEnd()
Event = Union[PartBegin, bytes, PartEnd]

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _DATA, _EPILOGUE = range(5)


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type, or None (not multipart, or invalid)."""
    main, params = parse_options(content_type)
    if main != "multipart/form-data":
        return None
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70 or not boundary.isascii():
        return None
    return boundary.encode("ascii")


class MultipartParser:
    """State machine over the body of one multipart request (see the module docstring)."""

    __slots__ = ("delimiter", "max_header_size", "max_parts", "parts", "_state", "_buf")

    def __init__(self, boundary: bytes, *, max_header_size: int = 8192, max_parts: int = 1024) -> None:
        if not boundary or len(boundary) > 70:
            raise ValueError(f"a multipart boundary has 1 to 70 bytes, got {len(boundary)}")
        self.delimiter = b"\r\n--" + boundary
        self.max_header_size = max_header_size
        self.max_parts = max_parts
        self.parts = 0
        self._state = _PREAMBLE
        self._buf = bytearray(b"\r\n")  # so that a delimiter on the very first line is found too

    @property
    def done(self) -> bool:
        """True once the closing delimiter was read."""
        return self._state == _EPILOGUE

    def feed(self, data: bytes) -> list[Event]:
        """Consume a chunk of the body; return the events it completes, in order."""
        if self._state == _EPILOGUE:
            return []
        buf = self._buf
        buf += data
        out: list[Event] = []
        pos = 0
        delimiter = self.delimiter
        while True:
            state = self._state
            if state == _DATA:
                i = buf.find(delimiter, pos)
                if i < 0:
                    # Everything but a possible delimiter prefix at the end is data.
                    safe = len(buf) - len(delimiter) + 1
                    if safe > pos:
                        out.append(bytes(buf[pos:safe]))
                        pos = safe
                    break
                if i > pos:
                    out.append(bytes(buf[pos:i]))
                out.append(PART_END)
                pos = i + len(delimiter)
                self._state = _AFTER_DELIMITER
            elif state == _PREAMBLE:
                i = buf.find(delimiter, pos)
                if i < 0:
                    pos = max(pos, len(buf) - len(delimiter) + 1)
                    break
                pos = i + len(delimiter)
                self._state = _AFTER_DELIMITER
            elif state == _AFTER_DELIMITER:
                pos = self._after_delimiter(buf, pos)
                if pos < 0:
                    pos = -pos - 1
                    break
                if self._state == _EPILOGUE:
                    pos = len(buf)
                    break
            else:  # _HEADERS
                if buf.startswith(b"\r\n", pos):
                    headers: dict[str, str] = {}
                    pos += 2
                else:
                    end = buf.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if len(buf) - pos > self.max_header_size:
                            raise MultipartError(f"part headers over {self.max_header_size} bytes")
                        break
                    if end + 4 - pos > self.max_header_size:
                        raise MultipartError(f"part headers over {self.max_header_size} bytes")
                    headers = _parse_part_headers(bytes(buf[pos:end]))
                    pos = end + 4
                self.parts += 1
                if self.parts > self.max_parts:
                    raise MultipartError(f"more than {self.max_parts} parts")
                out.append(PartBegin(headers))
                self._state = _DATA
        if pos:
            del buf[:pos]
        return out

    def _after_delimiter(self, buf: bytearray, pos: int) -> int:
        """After ``CRLF--boundary``: ``--`` ends the body, else padding then CRLF starts a part.

        Returns the new position, or ``-(pos + 1)`` when more bytes are needed.
        """
        if len(buf) - pos < 2:
            return -(pos + 1)
        if buf[pos] == 45 and buf[pos + 1] == 45:  # "--"
            self._state = _EPILOGUE
            return pos + 2
        i = pos
        while i < len(buf) and buf[i] in (32, 9):  # transport padding
            i += 1
        if len(buf) - i < 2:
            if i - pos > 256:
                raise MultipartError("transport padding too long")
            return -(pos + 1)
        if buf[i] != 13 or buf[i + 1] != 10:
            raise MultipartError("boundary not followed by CRLF")
        self._state = _HEADERS
        return i + 2

    def finish(self) -> None:
        """The body ended: raise MultipartError unless the closing delimiter was seen."""
        if self._state != _EPILOGUE:
            raise MultipartError("multipart body ended before its closing boundary")


def _parse_part_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise MultipartError(f"bad part header line {line[:60]!r}")
        headers[name.decode("latin-1").lower()] = value.strip(b" \t").decode("utf-8", "surrogateescape")
    return headers
