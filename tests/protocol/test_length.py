"""LengthFramer (open_length_check) and LengthFuncFramer (package_length_func)."""

from __future__ import annotations

import random
import struct
from typing import Callable, Iterator

import pytest

from threadswoole.protocol import LENGTH_TYPES, Framer, FramingError, LengthFramer, LengthFuncFramer

pytestmark = pytest.mark.timeout(30)

MiB = 1024 * 1024


# -- house helper: every input is fed whole, byte by byte and split at every offset --
def _split_points(n: int) -> list[int]:
    if n <= 4096:
        return list(range(1, n))
    # Big inputs: every offset near both ends plus a stride (all points would be O(n^2)).
    return sorted({*range(1, 300), *range(n - 300, n), *range(300, n - 300, 997)})


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


def feed_ways(make: Callable[[], Framer], data: bytes) -> Iterator[tuple[str, list[bytes], FramingError | None, Framer]]:
    """Yield (way, packets, error, framer) for: whole, one byte at a time, every 2-piece split."""
    ways = [("whole", [data]), ("bytewise", [data[i : i + 1] for i in range(len(data))])]
    ways += [(f"split@{i}", [data[:i], data[i:]]) for i in _split_points(len(data))]
    for way, pieces in ways:
        framer = make()
        packets, err = _run(framer, pieces)
        yield way, packets, err, framer


def check(make: Callable[[], Framer], data: bytes, expected: list[bytes], *, buffered: int = 0,
          reason: str | None = None) -> None:
    """Every way yields exactly ``expected`` then (if ``reason``) fails with that reason."""
    for way, packets, err, framer in feed_ways(make, data):
        assert packets == expected, way
        assert all(type(p) is bytes for p in packets), way
        if reason is None:
            assert err is None, (way, err)
            assert framer.buffered == buffered, way
        else:
            assert err is not None and err.reason == reason, (way, err)


# -- LengthFramer --------------------------------------------------------------------
def pkt(code: str, value: int, body: bytes = b"") -> bytes:
    return struct.pack(LENGTH_TYPES[code], value) + body


def lf(code: str = "N", off: int = 0, body: int | None = None, mx: int = 2 * MiB) -> Callable[[], LengthFramer]:
    size = struct.calcsize(LENGTH_TYPES[code])
    return lambda: LengthFramer(code, off, size if body is None else body, mx)


@pytest.mark.parametrize("code", list(LENGTH_TYPES))
def test_every_length_type_small_packets(code: str) -> None:
    packets = [pkt(code, 3, b"abc"), pkt(code, 0), pkt(code, 5, b"hello")]
    check(lf(code), b"".join(packets), packets)


@pytest.mark.parametrize(
    "code,value",
    [("c", 127), ("C", 255), ("s", 32767), ("S", 65535), ("n", 65535), ("v", 65535), ("l", 70000)],
)
def test_max_values_accepted(code: str, value: int) -> None:
    data = pkt(code, value, bytes(range(256)) * (value // 256) + bytes(value % 256))
    check(lf(code, mx=len(data)), data + data[:3], [data], buffered=3)


@pytest.mark.parametrize("code,value", [("c", -1), ("c", -128), ("s", -1), ("s", -32768), ("l", -1), ("l", -(2**31))])
def test_negative_signed_length_is_bad_length(code: str, value: int) -> None:
    check(lf(code), pkt(code, value, b"xyz"), [], reason="bad_length")
    # a good packet first is still delivered (via FramingError.packets when in the same feed)
    good = pkt(code, 1, b"!")
    check(lf(code), good + pkt(code, value, b"xyz"), [good], reason="bad_length")
    # body_offset large enough that body_offset + value == len(data): still a negative length
    size = struct.calcsize(LENGTH_TYPES[code])
    check(lf(code, body=16), pkt(code, -1, b"x" * (15 - size)), [], reason="bad_length")


@pytest.mark.parametrize("code", ["N", "L", "V", "l"])
def test_huge_announcement_is_too_large_right_after_header(code: str) -> None:
    value = 0x7FFFFFFF if code == "l" else 0xFFFFFFFF
    data = pkt(code, value, b"body bytes that never arrive in full")
    check(lf(code), data, [], reason="too_large")
    framer = lf(code)()
    header = pkt(code, value)
    for i in range(len(header) - 1):
        assert framer.feed(header[i : i + 1]) == []
    with pytest.raises(FramingError) as info:
        framer.feed(header[-1:])
    assert info.value.reason == "too_large"
    assert framer.buffered == 0


def test_little_and_big_endian() -> None:
    assert LengthFramer("v", 0, 2, 100).feed(b"\x02\x00ab") == [b"\x02\x00ab"]
    assert LengthFramer("V", 0, 4, 100).feed(b"\x02\x00\x00\x00ab") == [b"\x02\x00\x00\x00ab"]
    assert LengthFramer("n", 0, 2, 100).feed(b"\x00\x02ab") == [b"\x00\x02ab"]
    assert LengthFramer("N", 0, 4, 100).feed(b"\x00\x00\x00\x02ab") == [b"\x00\x00\x00\x02ab"]
    check(lf("v", mx=300), b"\x00\x02" + b"x" * 512, [], reason="too_large")  # 0x0200 little endian
    check(lf("v", mx=1024), b"\x00\x02" + b"x" * 512, [b"\x00\x02" + b"x" * 512])


def test_swoole_16_byte_header_length_at_offset_8() -> None:
    def message(kind: int, uid: int, body: bytes, serid: int) -> bytes:
        return struct.pack(">IIII", kind, uid, len(body), serid) + body

    msgs = [message(1, 1000, b"hello", 7), message(2, 1001, b"", 8), message(3, 0xFFFFFFFF, b"x" * 40, 9)]
    check(lambda: LengthFramer("N", 8, 16, 2 * MiB), b"".join(msgs), msgs)


def test_body_offset_4_length_offset_0_several_packets_and_empty_body() -> None:
    msgs = [pkt("N", len(b), b) for b in (b"one", b"", b"three", b"", b"\x00" * 9)]
    check(lf("N"), b"".join(msgs) + msgs[0][:2], msgs, buffered=2)


def test_body_offset_zero_length_counts_header() -> None:
    # body_offset 0: the length field is the total packet length, header included
    msgs = [pkt("N", 4), pkt("N", 7, b"abc"), pkt("n", 1, b"")[:0] + pkt("N", 5, b"z")]
    check(lambda: LengthFramer("N", 0, 0, 100), b"".join(msgs), msgs)
    for tiny in (0, 1, 3):  # shorter than the header itself: can never be a packet
        check(lambda: LengthFramer("N", 0, 0, 100), pkt("N", tiny, b"abcdef"), [], reason="bad_length")
    # length field at offset 2, header needs 6 bytes
    check(lambda: LengthFramer("N", 2, 0, 100), b"ab" + pkt("N", 5, b"cd"), [], reason="bad_length")
    check(lambda: LengthFramer("N", 2, 0, 100), b"ab" + pkt("N", 6), [b"ab" + pkt("N", 6)])


def test_exactly_max_length_ok_one_byte_over_fails() -> None:
    body = b"b" * 96
    check(lf("N", mx=100), pkt("N", 96, body), [pkt("N", 96, body)])
    check(lf("N", mx=100), pkt("N", 97, body + b"b"), [], reason="too_large")
    check(lf("N", mx=100), pkt("N", 97), [], reason="too_large")  # fails on the header alone


def test_one_complete_packet_is_returned_without_copy() -> None:
    data = pkt("N", 60, bytes(60))
    framer = LengthFramer("N", 0, 4, 2 * MiB)
    (out,) = framer.feed(data)
    assert out is data and framer.buffered == 0


def test_non_bytes_input_yields_bytes() -> None:
    data = pkt("N", 2, b"ab") * 2
    for chunk in (bytearray(data), memoryview(data)):
        out = LengthFramer("N", 0, 4, 100).feed(chunk)
        assert out == [data[:6], data[6:]] and all(type(p) is bytes for p in out)
    framer = LengthFramer("N", 0, 4, 100)
    source = bytearray(data[:6])
    (out,) = framer.feed(source)
    source[:] = b"\xff" * 6  # the caller reusing its recv buffer must not alter the packet
    assert out == data[:6] and type(out) is bytes


def test_failed_framer_stays_failed_and_reset_recovers() -> None:
    framer = LengthFramer("N", 0, 4, 10)
    assert framer.feed(pkt("N", 1)) == []
    with pytest.raises(FramingError) as info:
        framer.feed(b"x" + pkt("N", 100))
    assert info.value.reason == "too_large" and info.value.packets == [pkt("N", 1, b"x")]
    assert framer.failed and framer.buffered == 0
    for again in (pkt("N", 1, b"x"), b""):
        with pytest.raises(FramingError):
            framer.feed(again)
    framer.reset()
    assert not framer.failed
    assert framer.feed(pkt("N", 1, b"x")) == [pkt("N", 1, b"x")]


def test_reset_drops_partial_packet() -> None:
    framer = LengthFramer("N", 0, 4, 100)
    assert framer.feed(pkt("N", 5, b"ab")) == [] and framer.buffered == 6
    framer.reset()
    assert framer.buffered == 0
    assert framer.feed(pkt("N", 1, b"z")) == [pkt("N", 1, b"z")]


def test_bad_constructor_arguments() -> None:
    for bad in ("x", "", "NN", None):
        with pytest.raises(ValueError, match="package_length_type"):
            LengthFramer(bad, 0, 4, 100)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LengthFramer("N", -1, 4, 100)
    with pytest.raises(ValueError):
        LengthFramer("N", 0, 4, 0)


def test_one_mebibyte_packet_one_byte_at_a_time() -> None:
    data = pkt("N", MiB, b"\x5a" * MiB)
    framer = LengthFramer("N", 0, 4, 2 * MiB)
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [data] and framer.buffered == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 2024])
def test_random_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    code = rng.choice(list(LENGTH_TYPES))
    size = struct.calcsize(LENGTH_TYPES[code])
    off, extra = rng.randrange(0, 6), rng.randrange(0, 5)
    limit = 127 if code == "c" else 255 if code == "C" else 3000
    packets = []
    for _ in range(rng.randrange(1, 40)):
        body = rng.randbytes(rng.randrange(0, limit))
        prefix = rng.randbytes(off) + struct.pack(LENGTH_TYPES[code], len(body)) + rng.randbytes(extra)
        packets.append(prefix + body)
    data = b"".join(packets)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 200))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    framer = LengthFramer(code, off, off + size + extra, 2 * MiB)
    assert _run(framer, pieces) == (packets, None)
    assert framer.buffered == 0
    check(lambda: LengthFramer(code, off, off + size + extra, 2 * MiB), b"".join(packets[:3]), packets[:3])


# -- LengthFuncFramer ------------------------------------------------------------------
def ascii_len(data: bytes) -> int:
    """Swoole's doc example: an 8-digit ASCII length, then the body."""
    assert type(data) is bytes
    if len(data) < 8:
        return 0
    n = int(data[:8])
    return n + 8 if n > 0 else -1


def af(mx: int = 2 * MiB, func: Callable[[bytes], object] = ascii_len) -> Callable[[], LengthFuncFramer]:
    return lambda: LengthFuncFramer(func, mx)  # type: ignore[arg-type]


def amsg(body: bytes) -> bytes:
    return b"%08d" % len(body) + body


def test_func_packets() -> None:
    msgs = [amsg(b"hello"), amsg(b"x"), amsg(b"world" * 20)]
    check(af(), b"".join(msgs) + b"0000", msgs, buffered=4)


def test_func_minus_one_is_error() -> None:
    check(af(), amsg(b"ok") + b"00000000rest", [amsg(b"ok")], reason="length_func")


@pytest.mark.parametrize("result", ["5", 1.5, None, True, -2, b"x"])
def test_func_garbage_result(result: object) -> None:
    check(af(func=lambda data: result), b"abcdefgh", [], reason="length_func")


def test_func_raising_is_chained() -> None:
    def boom(data: bytes) -> int:
        raise KeyError("nope")

    check(af(func=boom), b"abc", [], reason="length_func")
    with pytest.raises(FramingError) as info:
        LengthFuncFramer(boom, 100).feed(b"abc")
    assert isinstance(info.value.__cause__, KeyError)
    parse = af(func=lambda d: int(d[:8]) + 8 if len(d) >= 8 else 0)
    check(parse, amsg(b"ok") + b"0000000xyz", [amsg(b"ok")], reason="length_func")  # int(b"0000000x")


def test_func_too_large() -> None:
    check(af(mx=20), amsg(b"x" * 12), [amsg(b"x" * 12)])
    check(af(mx=20), amsg(b"x" * 13), [], reason="too_large")
    check(af(mx=20, func=lambda d: 0), b"y" * 21, [], reason="too_large")
    check(af(mx=20, func=lambda d: 0), b"y" * 20, [], buffered=20)


def test_func_called_once_per_packet_once_length_known() -> None:
    calls: list[int] = []

    def counting(data: bytes) -> int:
        calls.append(len(data))
        return ascii_len(data)

    framer = LengthFuncFramer(counting, 1000)
    data = amsg(b"z" * 100)
    out = [p for i in range(len(data)) for p in framer.feed(data[i : i + 1])]
    assert out == [data]
    assert calls == [1, 2, 3, 4, 5, 6, 7, 8]
    calls.clear()
    assert framer.feed(data) == [data] and calls == [len(data)]


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_func_random_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    packets = [amsg(rng.randbytes(rng.randrange(1, 500))) for _ in range(rng.randrange(1, 50))]
    data = b"".join(packets)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(1, 100)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert _run(LengthFuncFramer(ascii_len, 2 * MiB), pieces) == (packets, None)
    check(af(), b"".join(packets[:3]), packets[:3])
