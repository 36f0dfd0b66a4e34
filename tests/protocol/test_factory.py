"""make_framer: Swoole settings dict -> framer (precedence, defaults, errors)."""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterator

import pytest

from threadswoole.protocol import (
    LENGTH_TYPES,
    EofCheckFramer,
    EofSplitFramer,
    Framer,
    FramingError,
    LengthFramer,
    LengthFuncFramer,
    make_framer,
)

pytestmark = pytest.mark.timeout(30)


# -- house helper: every input is fed whole, byte by byte and split at every offset --
def feed_ways(make: Callable[[], Framer], data: bytes) -> Iterator[tuple[str, list[bytes], FramingError | None]]:
    """Yield (way, packets, error) for: whole, one byte at a time, every 2-piece split."""
    ways = [("whole", [data]), ("bytewise", [data[i : i + 1] for i in range(len(data))])]
    ways += [(f"split@{i}", [data[:i], data[i:]]) for i in range(1, len(data))]
    for way, pieces in ways:
        framer, out, err = make(), [], None
        for piece in pieces:
            try:
                out.extend(framer.feed(piece))
            except FramingError as exc:
                out.extend(exc.packets)
                err = exc
                assert framer.buffered == 0
                break
        yield way, out, err


def check(settings: dict[str, Any], data: bytes, expected: list[bytes], reason: str | None = None) -> None:
    for way, packets, err in feed_ways(lambda: make_framer(settings), data):  # type: ignore[arg-type, return-value]
        assert packets == expected, way
        assert (err and err.reason) == reason, (way, err)


def test_no_framing() -> None:
    assert make_framer({}) is None
    assert make_framer({"open_eof_check": False, "open_length_check": 0, "package_eof": "\n"}) is None
    # package_length_func only works together with open_length_check (as in Swoole)
    assert make_framer({"package_length_func": lambda d: 0}) is None


def test_eof_split_wins_over_eof_check_and_length() -> None:
    for extra in ({}, {"open_eof_check": True}, {"open_length_check": True}):
        framer = make_framer({"open_eof_split": True, **extra})
        assert type(framer) is EofSplitFramer
        assert framer.eof == b"\r\n\r\n" and framer.max_length == 2 * 1024 * 1024
    check({"open_eof_split": True, "open_eof_check": True, "package_eof": "\n"}, b"a\nb\nc", [b"a\n", b"b\n"])


def test_eof_check_wins_over_length() -> None:
    framer = make_framer({"open_eof_check": True, "open_length_check": True, "package_max_length": 64})
    assert type(framer) is EofCheckFramer
    assert framer.eof == b"\r\n\r\n" and framer.max_length == 64
    check({"open_eof_check": True, "package_eof": b"\n", "package_max_length": 4}, b"abc\n", [b"abc\n"])
    check({"open_eof_check": True, "package_eof": b"\n", "package_max_length": 4}, b"abcd\n", [], "too_large")
    framer = make_framer({"open_eof_check": True, "package_eof": b"\n"})
    assert framer.feed(b"a\nb\n") == [b"a\nb\n"]  # only the tail is checked


def test_length_defaults() -> None:
    framer = make_framer({"open_length_check": True})
    assert type(framer) is LengthFramer
    assert (framer.length_type, framer.length_offset, framer.body_offset) == ("N", 0, 0)
    assert framer.max_length == 2097152
    # defaults: N at offset 0, body offset 0 -> the length counts the 4-byte header itself
    packets = [struct.pack(">I", 6) + b"hi", struct.pack(">I", 4)]
    check({"open_length_check": True}, b"".join(packets), packets)


def test_length_settings() -> None:
    settings = {
        "open_length_check": True,
        "package_length_type": "v",
        "package_length_offset": 2,
        "package_body_offset": 4,
        "package_max_length": 10,
    }
    framer = make_framer(settings)
    assert type(framer) is LengthFramer and framer.max_length == 10
    packets = [b"\xaa\xbb\x03\x00abc", b"\x00\x00\x00\x00"]
    check(settings, b"".join(packets), packets)
    check(settings, b"\xaa\xbb\x07\x00abcdefg", [], reason="too_large")


def test_length_func_needs_open_length_check_and_wins_over_type() -> None:
    def func(data: bytes) -> int:
        return data[0] + 1

    settings = {"open_length_check": True, "package_length_type": "N", "package_length_func": func}
    assert type(make_framer(settings)) is LengthFuncFramer
    check(settings, b"\x02ab\x00\x01z", [b"\x02ab", b"\x00", b"\x01z"])


@pytest.mark.parametrize("code", list(LENGTH_TYPES))
def test_every_length_type_accepted(code: str) -> None:
    framer = make_framer({"open_length_check": True, "package_length_type": code})
    assert isinstance(framer, LengthFramer) and framer.length_type == code


@pytest.mark.parametrize("bad", ["x", "q", "", "NN", "n ", "Q"])
def test_unknown_length_type(bad: str) -> None:
    with pytest.raises(ValueError, match="package_length_type"):
        make_framer({"open_length_check": True, "package_length_type": bad})


@pytest.mark.parametrize("key", ["open_eof_check", "open_eof_split"])
def test_eof_values(key: str) -> None:
    assert make_framer({key: True, "package_eof": "\r\n"}).eof == b"\r\n"  # type: ignore[union-attr]
    assert make_framer({key: True, "package_eof": "∎"}).eof == "∎".encode()  # type: ignore[union-attr]
    assert make_framer({key: True, "package_eof": b"12345678"}).eof == b"12345678"  # type: ignore[union-attr]
    for bad in (b"", "", b"123456789", "ééééé"):  # "ééééé" is 10 bytes in UTF-8
        with pytest.raises(ValueError, match="package_eof"):
            make_framer({key: True, "package_eof": bad})


def test_failed_framer_from_factory_stays_failed() -> None:
    framer = make_framer({"open_length_check": True, "package_body_offset": 4, "package_max_length": 100})
    assert framer is not None
    with pytest.raises(FramingError) as info:
        framer.feed(b"\xff\xff\xff\xff")
    assert info.value.reason == "too_large" and framer.buffered == 0
    with pytest.raises(FramingError):
        framer.feed(b"\x00\x00\x00\x00")
    framer.reset()
    assert framer.feed(b"\x00\x00\x00\x00") == [b"\x00\x00\x00\x00"]
