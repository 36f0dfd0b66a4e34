"""The HTTP/1.1 request corpus: every input fed whole, byte by byte and split at every offset.

tests/corpus/http/invalid/NNN.http + NNN.expect ({"status", "reason", "source", "options"?,
"events"?}) and tests/corpus/http/valid/NNN.http + NNN.json ({"requests": [...], "source",
"options"?}). The .http files hold the raw bytes with escapes: ``\\r``, ``\\n``, ``\\t``,
``\\0``, ``\\xHH`` and ``\\\\``; real newlines in the file are ignored (they only make it
readable), so editors cannot change the bytes under test.

Each way of feeding must give the same outcome: the same requests (a streamed request's
chunks are joined back into one request before comparing) and, for invalid input, the same
status and reason. 100-continue Replies are left out: whether one is due depends on how the
bytes were split (it is sent only while the body has not started), see test_http_codec.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from threadswoole.protocol.codec import ProtocolError, Reply
from threadswoole.protocol.http import HttpBodyChunk, HttpCodec, HttpRequest

pytestmark = pytest.mark.timeout(120)

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "http"
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rnt0\\])")
_SIMPLE = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\0", b"\\": b"\\"}


def load_http(path: Path) -> bytes:
    """The raw bytes of a corpus .http file (see the module docstring)."""
    text = path.read_bytes().replace(b"\n", b"")
    return _ESCAPE.sub(lambda m: _SIMPLE.get(m.group(1)) or bytes([int(m.group(1)[1:], 16)]), text)


def _split_points(n: int) -> list[int]:
    if n <= 2048:
        return list(range(1, n))
    # Long inputs (8 KiB heads): every offset near both ends and around each CRLF, plus a stride.
    return sorted({*range(1, 200), *range(n - 200, n), *range(200, n - 200, 61)})


def ways(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [data]
    if len(data) <= 4096:
        yield "bytewise", [data[i:i + 1] for i in range(len(data))]
    else:
        yield "bytewise-prefix", [data[i:i + 1] for i in range(512)] + [data[512:]]
        yield "64-byte pieces", [data[i:i + 64] for i in range(0, len(data), 64)]
    for i in _split_points(len(data)):
        yield f"split@{i}", [data[:i], data[i:]]


def run(codec: HttpCodec, pieces: list[bytes]) -> tuple[list[Any], ProtocolError | None]:
    events: list[Any] = []
    for piece in pieces:
        try:
            events.extend(codec.feed(piece))
        except ProtocolError as err:
            events.extend(err.events)
            return events, err
    return events, None


def joined(events: list[Any]) -> list[dict[str, Any]]:
    """Requests as plain dicts, streamed bodies joined; Replies dropped (see the module doc)."""
    out: list[dict[str, Any]] = []
    open_request: dict[str, Any] | None = None
    for event in events:
        if isinstance(event, Reply):
            continue
        if isinstance(event, HttpRequest):
            assert open_request is None, "a new request before the previous body ended"
            item = {name: getattr(event, name) for name in HttpRequest.__slots__ if name != "head"}
            item["body"] = event.body.decode("latin-1")
            out.append(item)
            if not event.complete:
                open_request = item
        else:
            assert isinstance(event, HttpBodyChunk) and open_request is not None
            open_request["body"] += event.data.decode("latin-1")
            if event.final:
                open_request["complete"] = True
                open_request["trailers"] = event.trailers
                open_request = None
    return out


def _cases(kind: str, suffix: str) -> list[Any]:
    return [pytest.param(path, path.with_suffix(suffix), id=path.stem)
            for path in sorted((CORPUS / kind).glob("*.http"))]


def test_corpus_is_big_enough() -> None:
    assert len(_cases("invalid", ".expect")) >= 60
    assert len(_cases("valid", ".json")) >= 40


@pytest.mark.parametrize("http_file,expect_file", _cases("invalid", ".expect"))
def test_invalid(http_file: Path, expect_file: Path) -> None:
    data = load_http(http_file)
    expect = json.loads(expect_file.read_text())
    options = expect.get("options", {})
    for way, pieces in ways(data):
        codec = HttpCodec(**options)
        events, err = run(codec, pieces)
        assert err is not None, f"{way}: accepted {events}"
        assert (err.reason, int(err.response.split(b" ", 2)[1])) == (expect["reason"], expect["status"]), \
            f"{way}: {err}"
        assert b"\r\nConnection: close\r\n" in err.response, way
        assert len([e for e in joined(events) if e["complete"]]) == expect.get("events", 0), way
        assert codec.failed and codec.buffered == 0, way
        with pytest.raises(ProtocolError):
            codec.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


@pytest.mark.parametrize("http_file,json_file", _cases("valid", ".json"))
def test_valid(http_file: Path, json_file: Path) -> None:
    data = load_http(http_file)
    expect = json.loads(json_file.read_text())
    options = expect.get("options", {})
    defaults = {"complete": True, "expect_continue": False, "upgrade": False, "trailers": None}
    wanted = []
    for item in expect["requests"]:
        full = {**defaults, **item}
        full.setdefault("content_length", -1 if "transfer-encoding" in full["headers"]
                        else int(full["headers"].get("content-length", 0)))
        wanted.append(full)
    for way, pieces in ways(data):
        codec = HttpCodec(**options)
        events, err = run(codec, pieces)
        assert err is None, f"{way}: {err}"
        got = joined(events)
        assert got == wanted, way
        # The raw head of each request is kept byte for byte (Request.get_data()).
        heads = [e.head for e in events if isinstance(e, HttpRequest)]
        assert all(data.find(head) >= 0 and head.endswith(b"\r\n\r\n") for head in heads), way
