"""EofCheckFramer (open_eof_check) and EofSplitFramer (open_eof_split)."""

from __future__ import annotations

import random
from typing import Callable, Iterator

import pytest

from threadswoole.protocol import EofCheckFramer, EofSplitFramer, Framer, FramingError

pytestmark = pytest.mark.timeout(30)

Expected = list[bytes] | Callable[[list[bytes]], list[bytes]]


# -- house helper: every input is fed whole, byte by byte and split at every offset --
def _run(framer: Framer, pieces: list[bytes]) -> tuple[list[bytes], FramingError | None]:
    out: list[bytes] = []
    for piece in pieces:
        try:
            out.extend(framer.feed(piece))
        except FramingError as err:
            out.extend(err.packets)
            assert framer.buffered == 0, "a failed framer must release its buffer"
            with pytest.raises(FramingError):
                framer.feed(b"more")
            return out, err
    return out, None


def feed_ways(
    make: Callable[[], Framer], data: bytes
) -> Iterator[tuple[str, list[bytes], list[bytes], FramingError | None, Framer]]:
    """Yield (way, pieces, packets, error, framer) for: whole, one byte at a time, every 2-piece split."""
    ways = [("whole", [data]), ("bytewise", [data[i : i + 1] for i in range(len(data))])]
    ways += [(f"split@{i}", [data[:i], data[i:]]) for i in range(1, len(data))]
    for way, pieces in ways:
        framer = make()
        packets, err = _run(framer, pieces)
        yield way, pieces, packets, err, framer


def check(make: Callable[[], Framer], data: bytes, expected: Expected, *, buffered: int | None = 0,
          reason: str | None = None) -> None:
    """Every way yields ``expected`` (a list, or a function of the pieces) then fails with ``reason``."""
    for way, pieces, packets, err, framer in feed_ways(make, data):
        want = expected(pieces) if callable(expected) else expected
        assert packets == want, way
        assert all(type(p) is bytes for p in packets), way
        if reason is None:
            assert err is None, (way, err)
            assert buffered is None or framer.buffered == buffered, way
        else:
            assert err is not None and err.reason == reason, (way, err)


def tail_model(eof: bytes) -> Callable[[list[bytes]], list[bytes]]:
    """open_eof_check reference: the buffer is a packet whenever a recv leaves it ending with eof."""

    def expected(pieces: list[bytes]) -> list[bytes]:
        out, acc = [], b""
        for piece in pieces:
            acc += piece
            if acc.endswith(eof):
                out.append(acc)
                acc = b""
        return out

    return expected


def split(eof: bytes, mx: int = 1 << 20) -> Callable[[], EofSplitFramer]:
    return lambda: EofSplitFramer(eof, mx)


def tail(eof: bytes, mx: int = 1 << 20) -> Callable[[], EofCheckFramer]:
    return lambda: EofCheckFramer(eof, mx)


# -- EofCheckFramer ----------------------------------------------------------------------
def test_check_single_message() -> None:
    check(tail(b"\r\n"), b"hello\r\n", [b"hello\r\n"])
    check(tail(b"\r\n"), b"hello\r\nwor", tail_model(b"\r\n"), buffered=None)
    framer = EofCheckFramer(b"\r\n", 100)
    assert framer.feed(b"hello\r\nwor") == [] and framer.buffered == 10


def test_check_two_messages_in_one_packet() -> None:
    data = b"GET a\r\n\r\nGET b\r\n\r\n"
    framer = EofCheckFramer(b"\r\n\r\n", 1000)
    assert framer.feed(data) == [data]  # Swoole compares only the tail: one packet, two messages
    check(tail(b"\r\n\r\n"), data, tail_model(b"\r\n\r\n"))
    framer = EofCheckFramer(b"\r\n", 1000)
    assert framer.feed(b"a\r\nb") == [] and framer.feed(b"\r\n") == [b"a\r\nb\r\n"]


def test_check_garbage_before_eof_and_eof_across_feeds() -> None:
    data = b"\x00\xffgarbage\r\n"
    check(tail(b"\r\n"), data, [data])
    framer = EofCheckFramer(b"\r\n", 100)
    assert framer.feed(b"abc\r") == [] and framer.feed(b"\n") == [b"abc\r\n"]


def test_check_max_length() -> None:
    check(tail(b"\n", mx=10), b"123456789\n", [b"123456789\n"])
    check(tail(b"\n", mx=10), b"1234567890\n", [], reason="too_large")
    check(tail(b"\n", mx=10), b"12345678901", [], reason="too_large")
    check(tail(b"\n", mx=10), b"1234567890", [], buffered=10)


def test_check_eight_byte_eof() -> None:
    eof = b"\x00END\xff\r\n!"
    data = b"a" + eof + b"bb" + eof
    check(tail(eof), data, tail_model(eof))
    check(tail(eof), b"abc" + eof[:7], [], buffered=10)
    check(tail(eof), b"abc" + eof + b"d", tail_model(eof), buffered=None)


def test_check_one_packet_without_copy_and_reset() -> None:
    framer = EofCheckFramer(b"\n", 100)
    data = b"one line\n"
    (out,) = framer.feed(data)
    assert out is data
    assert framer.feed(b"partial") == [] and framer.buffered == 7
    framer.reset()
    assert framer.buffered == 0 and framer.feed(b"x\n") == [b"x\n"]


def test_check_failed_stays_failed() -> None:
    framer = EofCheckFramer(b"\n", 4)
    with pytest.raises(FramingError) as info:
        framer.feed(b"abcdef")
    assert info.value.reason == "too_large" and framer.buffered == 0 and framer.failed
    with pytest.raises(FramingError):
        framer.feed(b"\n")


# -- EofSplitFramer ----------------------------------------------------------------------
def test_split_messages_separately() -> None:
    data = b"GET a\r\n\r\nGET b\r\n\r\nGET c"
    check(split(b"\r\n\r\n"), data, [b"GET a\r\n\r\n", b"GET b\r\n\r\n"], buffered=5)


def test_split_garbage_before_eof_is_one_packet() -> None:
    data = b"\x00\xff junk \x01hello\r\n"
    check(split(b"\r\n"), data, [data])


def test_split_eof_across_feeds() -> None:
    framer = EofSplitFramer(b"\r\n", 100)
    assert framer.feed(b"abc\r") == []
    assert framer.feed(b"\ndef\r") == [b"abc\r\n"]
    assert framer.feed(b"\n") == [b"def\r\n"]
    assert framer.buffered == 0
    check(split(b"\r\n"), b"a\r\n\r\nb\r\r\n\n\r\n", [b"a\r\n", b"\r\n", b"b\r\r\n", b"\n\r\n"])


def test_split_eight_byte_eof_and_overlapping_prefixes() -> None:
    eof = b"\r\n\r\n\r\n\r\n"
    msgs = [b"x" + eof, b"\r\n\r\n\r\ny" + eof, b"\r\n\r\n\r\n\r" + eof]
    check(split(eof), b"".join(msgs) + b"\r\n\r\n\r\n", msgs, buffered=6)
    check(split(b"aab"), b"aaab" + b"aaaab" + b"aab", [b"aaab", b"aaaab", b"aab"])


def test_split_empty_messages_and_eof_only() -> None:
    check(split(b"|"), b"|||a|", [b"|", b"|", b"|", b"a|"])


def test_split_max_length() -> None:
    check(split(b"\r\n", mx=10), b"12345678\r\n" + b"abc\r\n", [b"12345678\r\n", b"abc\r\n"])
    check(split(b"\r\n", mx=10), b"ok\r\n" + b"123456789\r\n", [b"ok\r\n"], reason="too_large")
    check(split(b"\r\n", mx=10), b"ok\r\n" + b"12345678901", [b"ok\r\n"], reason="too_large")
    check(split(b"\r\n", mx=10), b"ok\r\n" + b"1234567890", [b"ok\r\n"], buffered=10)


def test_split_one_message_without_copy() -> None:
    framer = EofSplitFramer(b"\r\n", 100)
    data = b"ping\r\n"
    (out,) = framer.feed(data)
    assert out is data and framer.buffered == 0
    assert framer.feed(b"") == []
    out = framer.feed(bytearray(b"a\r\nb\r\n"))
    assert out == [b"a\r\n", b"b\r\n"] and all(type(p) is bytes for p in out)


def test_split_failed_stays_failed_and_reset() -> None:
    framer = EofSplitFramer(b"\n", 5)
    assert framer.feed(b"ab") == []
    with pytest.raises(FramingError) as info:
        framer.feed(b"c\ndefghij")
    assert info.value.reason == "too_large" and info.value.packets == [b"abc\n"]
    assert framer.buffered == 0
    with pytest.raises(FramingError):
        framer.feed(b"\n")
    framer.reset()
    assert framer.feed(b"ok\n") == [b"ok\n"]
    assert framer.feed(b"par") == [] and framer.buffered == 3
    framer.reset()
    assert framer.buffered == 0 and framer.feed(b"x\n") == [b"x\n"]


def test_split_large_message_one_byte_at_a_time() -> None:
    data = b"z" * (1 << 20) + b"\r\n\r\n"
    framer = EofSplitFramer(b"\r\n\r\n", 2 << 20)
    out = [p for i in range(len(data)) for p in framer.feed(data[i : i + 1])]
    assert out == [data]


def test_bad_eof() -> None:
    for bad in (b"", "", b"123456789", 5):
        with pytest.raises(ValueError, match="package_eof"):
            EofSplitFramer(bad, 10)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="package_eof"):
            EofCheckFramer(bad, 10)  # type: ignore[arg-type]
    assert EofSplitFramer("é", 10).eof == "é".encode()


@pytest.mark.parametrize("seed", [1, 2, 3, 1234])
def test_split_random_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    eof = rng.choice([b"\n", b"\r\n", b"\r\n\r\n", b"\x00\x01\x00", b"--END--!"])
    alphabet = [b"a", b"\r", b"\n", b"\x00", b"\x01", b"-", b"E", b"N", b"D", b"!"]
    packets = []
    for _ in range(rng.randrange(1, 60)):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
        cut = body.find(eof)  # a message cannot contain eof, nor end with a prefix that completes it
        body = body if cut < 0 else body[:cut]
        while body and (body + eof).find(eof) != len(body):
            body = body[:-1]
        packets.append(body + eof)
    data = b"".join(packets)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 300))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert _run(EofSplitFramer(eof, 1 << 20), pieces) == (packets, None)
    check(split(eof), b"".join(packets[:4]), packets[:4])
    check(tail(eof), b"".join(packets[:4]), tail_model(eof))
