"""The incremental multipart/form-data parser, fed whole, byte by byte and split at every offset."""

from __future__ import annotations

from typing import Any

import pytest

from threadswoole.protocol.http.multipart import (
    MultipartError, MultipartParser, PartBegin, PartEnd, boundary_of,
)

pytestmark = pytest.mark.timeout(60)

BOUNDARY = b"----WebKitFormBoundary7MA4YWxkTrZu0gW"
BODY = (
    b"preamble is ignored\r\n"
    b"--" + BOUNDARY + b"\r\n"
    b'Content-Disposition: form-data; name="title"\r\n\r\n'
    b"hello world\r\n"
    b"--" + BOUNDARY + b"   \r\n"  # transport padding
    b'Content-Disposition: form-data; name="upload"; filename="C:\\\\Users\\\\me\\\\cat.png"\r\n'
    b"Content-Type: image/png\r\n\r\n"
    b"\x89PNG\r\n\x1a\n\r\n--" + BOUNDARY[:-1] + b"x not a delimiter\r\n"
    b"--" + BOUNDARY + b"\r\n"
    b"\r\n"  # a part without headers
    b"anonymous\r\n"
    b"--" + BOUNDARY + b"--\r\n"
    b"epilogue is ignored too"
)
PNG = b"\x89PNG\r\n\x1a\n\r\n--" + BOUNDARY[:-1] + b"x not a delimiter"


def collect(pieces: list[bytes]) -> list[Any]:
    parser = MultipartParser(BOUNDARY)
    parts: list[Any] = []
    for piece in pieces:
        for event in parser.feed(piece):
            if isinstance(event, PartBegin):
                parts.append([event, b""])
            elif isinstance(event, PartEnd):
                parts[-1].append("end")
            else:
                parts[-1][1] += event
    parser.finish()
    return parts


def check(parts: list[Any]) -> None:
    assert [(p[0].name, p[0].filename, p[0].content_type, p[1], p[2]) for p in parts] == [
        ("title", None, "", b"hello world", "end"),
        ("upload", "cat.png", "image/png", PNG, "end"),
        ("", None, "", b"anonymous", "end"),
    ]


def test_whole_bytewise_and_every_split() -> None:
    check(collect([BODY]))
    check(collect([BODY[i:i + 1] for i in range(len(BODY))]))
    for i in range(1, len(BODY)):
        check(collect([BODY[:i], BODY[i:]]))


def test_data_streams_before_the_part_ends() -> None:
    parser = MultipartParser(b"b")
    events = parser.feed(b"--b\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\n" + b"x" * 10000)
    assert isinstance(events[0], PartBegin)
    assert sum(len(e) for e in events[1:]) >= 10000 - len(b"\r\n--b")
    tail = parser.feed(b"\r\n--b--")
    assert isinstance(tail[-1], PartEnd)
    assert sum(len(e) for e in events[1:] + tail[:-1]) == 10000
    assert parser.done and parser.feed(b"anything") == []


def test_errors() -> None:
    with pytest.raises(MultipartError):
        MultipartParser(b"b").feed(b"--b\r\nno colon here\r\n\r\n")
    with pytest.raises(MultipartError):
        MultipartParser(b"b").feed(b"--bXY\r\n")
    with pytest.raises(MultipartError):
        MultipartParser(b"b", max_header_size=10).feed(b"--b\r\nContent-Disposition: form-data\r\n\r\n")
    with pytest.raises(MultipartError):
        MultipartParser(b"b", max_parts=1).feed(b"--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--")
    parser = MultipartParser(b"b")
    parser.feed(b"--b\r\n\r\nunfinished")
    with pytest.raises(MultipartError):
        parser.finish()
    with pytest.raises(ValueError):
        MultipartParser(b"")


def test_boundary_of() -> None:
    assert boundary_of("multipart/form-data; boundary=abc") == b"abc"
    assert boundary_of('Multipart/Form-Data; boundary="a b"') == b"a b"
    assert boundary_of("multipart/form-data") is None
    assert boundary_of("multipart/form-data; boundary=" + "x" * 71) is None
    assert boundary_of("application/json; boundary=abc") is None
