"""Test helpers for threadswoole.http: a recording Transport and a parser for what it recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

from threadswoole._context import set_error
from threadswoole.errors import ErrorCode


@dataclass
class Parsed:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse_response(data: bytes, *, head_only: bool = False) -> tuple[Parsed, bytes]:
    """One response from the front of `data`; returns it and the bytes after it."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, reason = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    parsed = Parsed(int(status), reason, headers, b"")  # type: ignore[arg-type]
    if head_only or parsed.status in (204, 304) or parsed.status < 200:
        return parsed, rest
    if parsed.header("transfer-encoding") == "chunked":
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                assert rest.startswith(b"\r\n"), rest[:20]
                return parsed, rest[2:]
            parsed.chunks.append(rest[:size])
            parsed.body += rest[:size]
            assert rest[size:size + 2] == b"\r\n"
            rest = rest[size + 2:]
    length = parsed.header("content-length")
    if length is None:
        parsed.body, rest = rest, b""
    else:
        parsed.body, rest = rest[:int(length)], rest[int(length):]
    return parsed, rest


class RecordingTransport:
    """Records sends, sendfiles (read back from disk) and close, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.closed = False
        self.broken = False

    def send(self, data: bytes) -> bool:
        assert type(data) is bytes and data, "send() gets non-empty bytes"
        if self.broken or self.closed:
            return set_error(ErrorCode.SESSION_CLOSED)
        self.calls.append(("send", data))
        return True

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        if self.broken or self.closed:
            return set_error(ErrorCode.SESSION_CLOSED)
        self.calls.append(("sendfile", path, offset, length))
        return True

    def close(self) -> bool:
        self.closed = True
        self.calls.append(("close",))
        return True

    @property
    def wire(self) -> bytes:
        out = b""
        for call in self.calls:
            if call[0] == "send":
                out += call[1]
            elif call[0] == "sendfile":
                with open(call[1], "rb") as f:
                    f.seek(call[2])
                    out += f.read(call[3])
        return out

    def response(self, *, head_only: bool = False) -> Parsed:
        parsed, rest = parse_response(self.wire, head_only=head_only)
        assert rest == b"", f"bytes after the response: {rest[:100]!r}"
        return parsed
