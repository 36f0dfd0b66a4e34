"""RespCodec (the RESP request parser) and the RESP writer (format, encode)."""

from __future__ import annotations

import glob
import json
import os
import random
from typing import Iterator

import pytest

from threadswoole.protocol import codec as codec_module
from threadswoole.protocol.codec import ProtocolError
from threadswoole.protocol.resp import (
    ARRAY,
    BIG_NUMBER,
    BOOLEAN,
    DOUBLE,
    ERROR,
    INT,
    MAP,
    NIL,
    SET,
    STATUS,
    STRING,
    ErrorReply,
    RespBatch,
    RespCodec,
    RespCommand,
    StatusReply,
    encode,
    format,
    split_args,
)

pytestmark = pytest.mark.timeout(120)

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus", "resp")


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


# -- house helper: every input is fed whole, byte by byte and split at every offset -----------------
def _split_points(n: int) -> list[int]:
    if n <= 4096:
        return list(range(1, n))
    return sorted({*range(1, 300), *range(n - 300, n), *range(300, n - 300, 997)})


def _ways(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    for i in _split_points(len(data)):
        yield f"split@{i}", [data[:i], data[i:]]


def run(pieces: list[bytes], **limits: int) -> tuple[list[list[bytes]], ProtocolError | None, RespCodec]:
    """Feed `pieces`; return the commands, the error (if any) and the codec. Checks the failed state."""
    codec = RespCodec(**limits)
    commands: list[list[bytes]] = []
    for piece in pieces:
        try:
            events = codec.feed(piece)
        except ProtocolError as err:
            commands += [event.args for event in err.events]
            assert codec.failed and codec.buffered == 0
            with pytest.raises(ProtocolError):
                codec.feed(b"PING\r\n")
            return commands, err, codec
        assert all(type(e) is RespCommand for e in events)
        commands += [event.args for event in events]
    return commands, None, codec


def check(data: bytes, expected: list[list[bytes]], *, response: bytes | None = None, buffered: int = 0, **limits: int) -> None:
    """Every way of cutting `data` yields `expected`, then fails with `response` (if given)."""
    for way, pieces in _ways(data):
        commands, err, codec = run(pieces, **limits)
        assert commands == expected, way
        assert all(type(a) is bytes for c in commands for a in c), way
        if response is None:
            assert err is None, (way, err)
            assert codec.buffered == buffered, way
        else:
            assert err is not None, way
            assert err.response == response, (way, err.response)


def _latin1(commands: list[list[str]]) -> list[list[bytes]]:
    return [[a.encode("latin-1") for a in c] for c in commands]


def _cases(kind: str) -> list[str]:
    return sorted(glob.glob(os.path.join(CORPUS, kind, "*.resp")))


@pytest.mark.parametrize("path", _cases("invalid"), ids=os.path.basename)
def test_corpus_invalid(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path[:-5] + ".json") as f:
        case = json.load(f)
    expected = _latin1(case["commands"])
    response = case["response"].encode("latin-1") + b"\r\n" if case["response"] else b""
    check(data, expected, response=response)


@pytest.mark.parametrize("path", _cases("valid"), ids=os.path.basename)
def test_corpus_valid(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path[:-5] + ".json") as f:
        case = json.load(f)
    check(data, _latin1(case["commands"]), buffered=case["buffered"])


def test_corpus_is_not_empty() -> None:
    assert len(_cases("invalid")) >= 30 and len(_cases("valid")) >= 20


# -- pipelining and events ----------------------------------------------------------------------------
def test_pipelined_commands_come_out_in_order() -> None:
    rng = random.Random(7)
    commands = []
    wire = b""
    for i in range(300):
        kind = rng.randrange(4)
        if kind == 0:
            args = [b"SET", b"key:%06d" % i, bytes(rng.randrange(256) for _ in range(rng.randrange(40)))]
            wire += cmd(*args)
        elif kind == 1:
            args = [b"GET", b"key:%06d" % i]
            wire += cmd(*args)
        elif kind == 2:
            args = [b"ECHO", b"x\r\n" * rng.randrange(3)]
            wire += cmd(*args)
        else:
            args = [b"INCR", b"n%d" % i]
            wire += b"INCR n%d\r\n" % i
        commands.append(args)
    for seed in range(5):
        cuts = sorted(random.Random(seed).sample(range(1, len(wire)), 40))
        pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)])]
        got, err, codec = run(pieces)
        assert err is None and got == commands and codec.buffered == 0


def test_batch_mode_gives_one_event_per_feed() -> None:
    codec = RespCodec(batch=True)
    wire = cmd(b"SET", b"a", b"1") + b"GET a\r\n" + cmd(b"DEL", b"a")
    (event,) = codec.feed(wire + b"*1\r\n$4\r\nPI")
    assert type(event) is RespBatch
    assert event.commands == [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"DEL", b"a"]]
    assert codec.feed(b"N") == []
    assert codec.feed(b"G\r\n") == [RespBatch([[b"PING"]])]
    with pytest.raises(ProtocolError) as info:
        codec.feed(b"PING\r\n*x\r\n")
    assert info.value.events == [RespBatch([[b"PING"]])]


def test_events_pack_and_unpack_through_the_wire_registry() -> None:
    for event in (RespCommand([b"SET", b"k", bytes(range(256))]), RespBatch([[b"PING"], [b"GET", b""]])):
        cls = codec_module.EVENT_TYPES[event.wire_id]
        assert cls is type(event)
        again = cls.unpack(event.pack())
        assert again == event and again is not event
    assert RespCommand.wire_id == 20 and RespBatch.wire_id == 21
    assert not hasattr(RespCommand([b"x"]), "__dict__")


def test_codec_protocol_name_and_types() -> None:
    codec = RespCodec()
    assert codec.protocol == "redis"
    assert codec.feed(bytearray(b"PING\r\n")) == [RespCommand([b"PING"])]
    assert codec.feed(memoryview(cmd(b"ECHO", b"x"))) == [RespCommand([b"ECHO", b"x"])]
    assert codec.feed(b"") == []


def test_arguments_are_independent_bytes() -> None:
    codec = RespCodec()
    (event,) = codec.feed(cmd(b"SET", b"k", b"v" * 5000))
    assert [type(a) for a in event.args] == [bytes, bytes, bytes]
    assert event.args[2] == b"v" * 5000


def test_detach_returns_the_unparsed_bytes() -> None:
    codec = RespCodec()
    assert codec.feed(b"PING\r\nECHO he") == [RespCommand([b"PING"])]
    assert codec.detach() == b"ECHO he"
    assert codec.buffered == 0


def test_a_big_bulk_trickling_in_is_not_reparsed() -> None:
    # 8 MiB in 4 KiB pieces: linear work (the codec waits for the announced length).
    value = b"v" * (8 * 1024 * 1024)
    wire = cmd(b"SET", b"k", value)
    codec = RespCodec(max_bulk_length=16 * 1024 * 1024)
    events = []
    for i in range(0, len(wire), 4096):
        events += codec.feed(wire[i : i + 4096])
    assert events == [RespCommand([b"SET", b"k", value])]


def test_a_long_inline_line_trickling_in_is_scanned_once() -> None:
    codec = RespCodec()
    line = b"ECHO " + b"a" * 60000
    for i in range(len(line)):
        assert codec.feed(line[i : i + 1]) == []
    assert codec.feed(b"\r\n") == [RespCommand([b"ECHO", b"a" * 60000])]


# -- limits: at the limit, and one over -----------------------------------------------------------------
def test_max_bulk_length() -> None:
    check(cmd(b"SET", b"k", b"v" * 100), [[b"SET", b"k", b"v" * 100]], max_bulk_length=100)
    check(cmd(b"SET", b"k", b"v" * 101), [], response=b"-ERR Protocol error: invalid bulk length\r\n", max_bulk_length=100)
    check(cmd(b"SET", b"k", b"v" * 2097152), [[b"SET", b"k", b"v" * 2097152]])  # the default, 2 MiB


def test_max_multibulk_length() -> None:
    check(cmd(*[b"a"] * 5), [[b"a"] * 5], max_multibulk_length=5)
    check(cmd(*[b"a"] * 6), [], response=b"-ERR Protocol error: invalid multibulk length\r\n", max_multibulk_length=5)
    codec = RespCodec()
    assert codec.feed(b"*1048576\r\n") == [] and not codec.failed  # the default limit itself is accepted


def test_max_inline_length() -> None:
    ok = b"E" * 16
    check(ok + b"\n", [[ok]], max_inline_length=16)
    check(ok[:-1] + b"\r\n", [[ok[:-1]]], max_inline_length=16)  # the CR counts
    over = b"-ERR Protocol error: too big inline request\r\n"
    check(ok + b"E\n", [], response=over, max_inline_length=16)
    check(ok + b"\r\n", [], response=over, max_inline_length=16)
    line = b"ECHO " + b"a" * (65536 - 5)
    check(line + b"\n", [[b"ECHO", b"a" * (65536 - 5)]])  # the default, 64 KiB
    check(line + b"a\n", [], response=over)


def test_max_inline_length_for_count_lines() -> None:
    check(b"*1" + b"\r\n$4\r\nPING\r\n", [[b"PING"]], max_inline_length=2)
    check(b"*01\r\n", [], response=b"-ERR Protocol error: too big mbulk count string\r\n", max_inline_length=2)
    check(b"*1\r\n$4\r\nPING\r\n", [[b"PING"]], max_inline_length=2)
    check(b"*1\r\n$10\r\n", [], response=b"-ERR Protocol error: too big bulk count string\r\n", max_inline_length=2)


def test_max_query_length_closes_without_a_reply() -> None:
    check(cmd(b"SET", b"k", b"v" * 96), [[b"SET", b"k", b"v" * 96]], max_query_length=100)
    check(cmd(b"SET", b"k", b"v" * 97), [], response=b"", max_query_length=100)


def test_limits_must_be_positive_ints() -> None:
    for bad in (0, -1, 1.5, "10", None):
        with pytest.raises(ValueError):
            RespCodec(max_bulk_length=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            RespCodec(max_inline_length=bad)  # type: ignore[arg-type]


def test_error_carries_reason_and_detail() -> None:
    with pytest.raises(ProtocolError) as info:
        RespCodec().feed(b"*1\r\n$x\r\n")
    assert info.value.reason == "invalid_bulk_length"
    assert info.value.detail == "invalid bulk length"


# -- inline splitting (sdssplitargs) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "line,args",
    [
        (b"", []),
        (b"   ", []),
        (b"set a b", [b"set", b"a", b"b"]),
        (b'"a b" c', [b"a b", b"c"]),
        (b"'a \"b' c", [b'a "b', b"c"]),
        (b'"\\x41\\x4a\\x4"', [b"AJx4"]),
        (b'"a\\\\b"', [b"a\\b"]),
        (b"'it\\'s'", [b"it's"]),
        (b"'a\\nb'", [b"a\\nb"]),
        (b'""', [b""]),
        (b'a"b c"d', None),
        (b'"a"b', None),
        (b'"abc', None),
        (b"'abc", None),
        (b'"abc\\', None),
        (b"\x0ba\x0bb", [b"a\x0bb"]),
        (b"a\x00b", [b"a\x00b"]),
        (b'"x"\x0by', [b"x", b"y"]),
    ],
)
def test_split_args(line: bytes, args: list[bytes] | None) -> None:
    assert split_args(line) == args


# -- the writer ---------------------------------------------------------------------------------------------
def test_format_each_type() -> None:
    assert format(NIL) == b"$-1\r\n"
    assert format(ERROR) == b"-ERR\r\n"
    assert format(ERROR, "WRONGTYPE bad") == b"-WRONGTYPE bad\r\n"
    assert format(ERROR, "ERR a\r\nb") == b"-ERR a  b\r\n"
    assert format(STATUS) == b"+OK\r\n"
    assert format(STATUS, "PONG") == b"+PONG\r\n"
    assert format(STATUS, b"QUEUED") == b"+QUEUED\r\n"
    assert format(INT, 42) == b":42\r\n"
    assert format(INT, -7) == b":-7\r\n"
    assert format(STRING, "héllo") == b"$6\r\nh\xc3\xa9llo\r\n"
    assert format(STRING, b"") == b"$0\r\n\r\n"
    assert format(STRING, bytearray(b"a\r\n")) == b"$3\r\na\r\n\r\n"
    assert format(SET, ["a", b"bc", None]) == b"*3\r\n$1\r\na\r\n$2\r\nbc\r\n$-1\r\n"
    assert format(SET, []) == b"*0\r\n"
    assert format(SET, (1, 2.5)) == b"*2\r\n$1\r\n1\r\n$3\r\n2.5\r\n"
    assert format(MAP, {"a": "1", b"b": 2}) == b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
    assert format(ARRAY, [1, [b"x", None], "y"]) == b"*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n$1\r\ny\r\n"
    assert format(DOUBLE, 1.5) == b"$3\r\n1.5\r\n"
    assert format(BOOLEAN, True) == b":1\r\n"
    assert format(BIG_NUMBER, 2**70) == b"$22\r\n1180591620717411303424\r\n"


@pytest.mark.parametrize(
    "type_code,value",
    [
        (INT, None), (INT, "5"), (INT, 1.5),
        (STRING, None), (STRING, 5), (STRING, ["a"]),
        (STATUS, 5), (ERROR, ["x"]),
        (SET, None), (SET, "abc"), (SET, b"abc"), (SET, {"a": 1}), (SET, [object()]), (SET, [["nested"]]),
        (MAP, None), (MAP, ["a", "b"]), (MAP, {"a": object()}), (MAP, {None: "x"}),
        (ARRAY, "abc"), (ARRAY, [object()]),
        (DOUBLE, "1.5"), (DOUBLE, True), (BOOLEAN, 1), (BIG_NUMBER, 1.0),
        (99, "x"), (-1, None),
    ],
)
def test_format_wrong_value_for_the_type_is_false(type_code: int, value: object) -> None:
    assert format(type_code, value) is False


def test_type_codes_are_swooles() -> None:
    assert (ERROR, NIL, STATUS, INT, STRING, SET, MAP) == (0, 1, 2, 3, 4, 5, 6)


def test_format_resp3() -> None:
    assert format(NIL, resp3=True) == b"_\r\n"
    assert format(MAP, {"a": "1"}, resp3=True) == b"%1\r\n$1\r\na\r\n$1\r\n1\r\n"
    assert format(SET, ["a", None], resp3=True) == b"*2\r\n$1\r\na\r\n_\r\n"  # Swoole's SET is the array reply
    assert format(DOUBLE, 1.5, resp3=True) == b",1.5\r\n"
    assert format(DOUBLE, float("inf"), resp3=True) == b",inf\r\n"
    assert format(DOUBLE, float("-inf"), resp3=True) == b",-inf\r\n"
    assert format(DOUBLE, float("nan"), resp3=True) == b",nan\r\n"
    assert format(BOOLEAN, False, resp3=True) == b"#f\r\n"
    assert format(BIG_NUMBER, 2**70, resp3=True) == b"(1180591620717411303424\r\n"
    assert format(STRING, "x", resp3=True) == b"$1\r\nx\r\n"


def test_encode_native_values() -> None:
    value = {"server": "threadswoole", "proto": 3, "modules": [], "ok": True, "ratio": 0.5, "tags": {"a"}, "none": None}
    assert encode(value, resp3=True) == (
        b"%7\r\n$6\r\nserver\r\n$12\r\nthreadswoole\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
        b"$2\r\nok\r\n#t\r\n$5\r\nratio\r\n,0.5\r\n$4\r\ntags\r\n~1\r\n$1\r\na\r\n$4\r\nnone\r\n_\r\n"
    )
    assert encode(value) == (
        b"*14\r\n$6\r\nserver\r\n$12\r\nthreadswoole\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
        b"$2\r\nok\r\n:1\r\n$5\r\nratio\r\n$3\r\n0.5\r\n$4\r\ntags\r\n*1\r\n$1\r\na\r\n$4\r\nnone\r\n$-1\r\n"
    )
    assert encode([StatusReply("OK"), ErrorReply("ERR no\nway")]) == b"*2\r\n+OK\r\n-ERR no way\r\n"
    assert encode(2**64, resp3=True) == b"(18446744073709551616\r\n"
    with pytest.raises(TypeError):
        encode(object())


def test_writer_output_parses_back_as_requests() -> None:
    # A SET/ARRAY reply of bulk strings is also a valid multibulk request: round-trip it.
    args = [b"SET", b"k", bytes(range(256)), b"", b"\r\n"]
    assert RespCodec().feed(format(SET, args)) == [RespCommand(args)]


def _mutated(rng: random.Random, data: bytes, alphabet: bytes, edits: int) -> bytes:
    """`data` with `edits` random one-byte replacements, deletions or insertions from `alphabet`."""
    out = bytearray(data)
    for _ in range(edits):
        if not out:
            break
        at = rng.randrange(len(out))
        op = rng.randrange(3)
        if op == 0:
            out[at] = rng.choice(alphabet)
        elif op == 1:
            del out[at]
        else:
            out.insert(at, rng.choice(alphabet))
    return bytes(out)


def test_mutated_streams_parse_the_same_however_cut() -> None:
    # Differential fuzzing: the fast (whole-batch) path and the exact (byte-level) path agree.
    rng = random.Random(2024)
    base = (cmd(b"SET", b"key:1", b"a\r\nb") + cmd(b"GET", b"key:1") + b"PING 'x y'\r\n" + cmd(b"ECHO", b"")) * 3
    alphabet = b"*$\r\n0123-'\" x"
    for _ in range(400):
        data = _mutated(rng, base, alphabet, rng.randrange(1, 4))
        outcomes = set()
        for pieces in ([data], [data[i : i + 1] for i in range(len(data))], [data[:37], data[37:]]):
            commands, err, codec = run(pieces)
            outcomes.add((repr(commands), err.response if err else None, codec.buffered if not err else -1))
        assert len(outcomes) == 1, (data, outcomes)


@pytest.mark.parametrize(
    "base",
    [
        cmd(b"GET", b"key:1") * 8,  # one shape: the column-wise path (_uniform)
        cmd(b"SET", b"k", b"v") * 5 + cmd(b"SET", b"k", b"a\r\nb"),  # one shape, a bulk holding CRLF
        cmd(b"PING") * 6,
        cmd(b"SET", b"key:1", b"value"),  # one command: feed's single-command path
        b"PING\r\n" * 6,  # whole inline lines: split all at once (split_lines)
        b"SET k v\r\nGET k\n\r\n  \r\nECHO a\r\n" + cmd(b"GET", b"k"),  # blank lines, bare \n, then multibulk
    ],
    ids=["get-x8", "set-x6-crlf", "ping-x6", "single", "inline-x6", "inline-mixed"],
)
def test_mutated_one_shape_streams_parse_the_same_however_cut(base: bytes) -> None:
    # The same differential check for the paths that take whole inputs of one shape at once.
    rng = random.Random(len(base))
    alphabet = b"*$\r\n0123-'\" x"
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 3)):
            at = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[at] = rng.choice(alphabet)
            elif op == 1:
                del data[at]
            else:
                data.insert(at, rng.choice(alphabet))
        data = bytes(data)
        outcomes = set()
        for pieces in ([data], [data[i : i + 1] for i in range(len(data))], [data[:11], data[11:]]):
            commands, err, codec = run(pieces)
            outcomes.add((repr(commands), err.response if err else None, codec.buffered if not err else -1))
        assert len(outcomes) == 1, (data, outcomes)


def test_one_shape_pipelines_and_their_edges() -> None:
    gets = [[b"GET", b"k%d" % i] for i in range(10)]
    check(b"".join(cmd(*c) for c in gets), gets)
    check(b"".join(cmd(*c) for c in gets) + b"*2\r\n$3\r\nGE", gets, buffered=2)  # a cut one after them: its bytes held
    odd = b"".join(cmd(*c) for c in gets[:3]) + b"*2\r\n$03\r\nGET\r\n$2\r\nk3\r\n"  # a non-canonical length: Redis refuses it
    check(odd, gets[:3], response=b"-ERR Protocol error: invalid bulk length\r\n")
    spaced = b"".join(cmd(*c) for c in gets[:3]) + b"*2\r\n$3\r\nGET\r\n$2\r\nk3 \r\n"  # a bulk a byte longer than said:
    check(spaced, gets[:4])  # Redis skips the two bytes after a bulk unread, and the lone "\n" is a blank inline line
    big = [[b"SET", b"k", b"v" * 2000]] * 3  # arguments beyond the fast path's 1024 bytes
    check(b"".join(cmd(*c) for c in big), big)
    check(cmd(b"GET", b"k") * 3, [[b"GET", b"k"]] * 3, max_multibulk_length=2)
    _, err, _ = run([cmd(b"GET", b"k") * 3], max_multibulk_length=1)
    assert err is not None and err.reason == "invalid_multibulk_length"
    _, err, _ = run([cmd(b"SET", b"key", b"value") * 3], max_query_length=5)  # limits still apply
    assert err is not None and err.reason == "query_too_large"
    batch = RespCodec(batch=True).feed(cmd(b"GET", b"a") + cmd(b"GET", b"b"))
    assert batch == [RespBatch([[b"GET", b"a"], [b"GET", b"b"]])] and all(type(c) is list for c in batch[0].commands)


def test_inline_lines_split_at_once_as_line_by_line() -> None:
    lines = [[b"SET", b"k", b"v"], [b"GET", b"k"], [b"PING"]]
    check(b"SET k v\r\nGET k\nPING\r\n\r\n \t \r\n", lines)  # blank lines are skipped
    check(b"PING\r\nSET a\x00b c\r\n", [[b"PING"], [b"SET", b"a\x00b", b"c"]])  # NUL is a plain byte here
    check(b"PING\r\nSET 'a b' c\r\n", [[b"PING"], [b"SET", b"a b", b"c"]])  # quotes: the exact splitter
    check(b"PING\r\n" + cmd(b"GET", b"k") + b"PING\r\n", [[b"PING"], [b"GET", b"k"], [b"PING"]])
    check(b"PING\r\nPI", [[b"PING"]], buffered=2)
    check(b"PING\r\n" + b"x" * 20 + b"\r\n", [[b"PING"]], response=b"-ERR Protocol error: too big inline request\r\n", max_inline_length=10)
    check(b"PING\r\nSET \"a\r\n", [[b"PING"]], response=b"-ERR Protocol error: unbalanced quotes in request\r\n")


# -- feed's hot path: one whole small command per feed (redis-benchmark -P 1) --------------------------------
HOT = {  # redis-benchmark's own bytes for -t ping,set,get
    "ping-inline": (b"PING\r\n", [b"PING"]),
    "ping-mbulk": (b"*1\r\n$4\r\nPING\r\n", [b"PING"]),
    "set": (b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n", [b"SET", b"key:__rand_int__", b"xxx"]),
    "get": (b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n", [b"GET", b"key:__rand_int__"]),
}


def _outcome(pieces: list[bytes], **limits: int) -> tuple[str, bytes | None, int]:
    commands, err, codec = run(pieces, **limits)
    return repr(commands), err.response if err else None, codec.buffered if not err else -1


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_path_commands_whole_bytewise_and_split(name: str) -> None:
    data, args = HOT[name]
    check(data, [args])
    check(data * 2, [args, args])  # two in one feed: the general path
    check(data + data[:3], [args], buffered=3)  # one, then the start of the next
    for first in range(1, len(data)):  # completed by a second feed, then the hot path again
        codec = RespCodec(batch=True)
        assert codec.feed(data[:first]) == []
        assert codec.feed(data[first:]) == [RespBatch([args])]
        assert codec.feed(data) == [RespBatch([args])] and codec.buffered == 0
    events = RespCodec(batch=True).feed(data)
    assert events == [RespBatch([args])] and type(events[0][0]) is list
    assert all(type(a) is bytes for a in events[0][0])


@pytest.mark.parametrize("name", sorted(HOT))
def test_mutated_hot_path_commands_parse_the_same_however_cut(name: str) -> None:
    # Differential: the hot path (the whole feed) agrees with the byte-level path (bytewise).
    rng = random.Random(name)
    data0 = HOT[name][0]
    alphabet = b"*$\r\n0123456789-'\" \x0b\x00x"
    for _ in range(400):
        data = _mutated(rng, data0, alphabet, rng.randrange(1, 3))
        if not data:
            continue
        outcomes = {_outcome([data]), _outcome([data[i : i + 1] for i in range(len(data))]), _outcome([data[:3], data[3:]])}
        assert len(outcomes) == 1, (data, outcomes)


@pytest.mark.parametrize(
    "data",
    [
        b"*2\r\n$3\r\nGET\r\n$15\r\nkey:__rand_int__\r\n",  # a length one short of the bulk
        b"*2\r\n$3\r\nGET\r\n$17\r\nkey:__rand_int__\r\n",  # one long: waits for more
        b"*2\r\n$3\r\nGET\r\n$016\r\nkey:__rand_int__\r\n",  # not canonical: Redis refuses it
        b"*02\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",
        b"*2\r\n$3\r\nGET\r\n$-1\r\nkey:__rand_int__\r\n",
        b"*2\r\n$3\r\nGET\r\n+16\r\nkey:__rand_int__\r\n",  # not a '$'
        b"*3\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",  # a count one over: waits for the third
        b"*1\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",  # a count one under: the rest is another command
        b"*2\r\n$3\r\nGET\r\n$2\r\n\r\n\r\n",  # a bulk holding CRLF
        b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\nx",  # a byte after it
        b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\n\n",  # bare LFs after a bulk: skipped unread
        b"*1\r\n$0\r\n\r\n",  # an empty argument
        b"*0\r\n", b"*-1\r\n", b"*\r\n",  # empty and bad counts
        b"PING\n", b"  PING  \t\r\n", b"\r\n", b" \r\n", b"PING\r", b"PING 'a b'\r\n", b"PING \"x\r\n",
        b"PING\x0bx\r\n", b"PING\x0cx\r\n", b"PI\x00NG\r\n", b"PING\r\nPING\r\n", b"PING\r\nPI",
    ],
)
def test_hot_path_meets_the_general_path(data: bytes) -> None:
    whole = _outcome([data])
    assert whole == _outcome([data[i : i + 1] for i in range(len(data))]), data
    for i in range(1, len(data)):
        assert whole == _outcome([data[:i], data[i:]]), (data, i)


def test_hot_path_keeps_the_limits() -> None:
    get, args = HOT["get"]
    check(get, [], response=b"-ERR Protocol error: invalid bulk length\r\n", max_bulk_length=8)
    check(get, [args], max_bulk_length=16)
    check(HOT["set"][0], [], response=b"-ERR Protocol error: invalid multibulk length\r\n", max_multibulk_length=2)
    check(get, [args], max_multibulk_length=2)
    check(get, [], response=b"-ERR Protocol error: invalid multibulk length\r\n", max_multibulk_length=1)
    check(b"PING xxxxx\r\n", [], response=b"-ERR Protocol error: too big inline request\r\n", max_inline_length=5)
    check(b"PING xxxx\r\n", [[b"PING", b"xxxx"]], max_inline_length=10)
    _, err, _ = run([HOT["set"][0]], max_query_length=10)
    assert err is not None and err.reason == "query_too_large"
    codec = RespCodec(batch=True)  # after detach, the hot path parses again
    codec.feed(get[:7])
    assert codec.detach() == get[4:7] and codec.feed(get) == [RespBatch([args])]  # (the count line was read)
