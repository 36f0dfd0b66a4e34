"""The RESP request parser: bytes from a client in, Redis commands out (sans-IO).

Requests are RESP2 multibulk (``*<n>\\r\\n`` then n ``$<len>\\r\\n<bytes>\\r\\n``) or inline lines
(anything else up to ``\\n``). The rules are Redis's own (networking.c, processMultibulkBuffer
and processInlineBuffer), including its error texts and its leniencies: a count line ends at
its first ``\\r`` and the byte after it is skipped unread, as are the two bytes after a bulk;
``*0`` and negative counts are empty requests that are skipped; so are blank inline lines.

Speed: a pipelined batch is cut with one ``bytes.split(b"\\r\\n")`` and each command is checked
against its canonical form with C-level calls (``map``, list compare); only what that fast
path cannot vouch for (a bulk holding CRLF, non-canonical numbers, big arguments, inline
commands, a command cut by the end of the data) goes through the exact byte-level path.
The fast path is tried again after such a command only while the bytes it has split stay
under twice the input, so any input costs linear time. Figures: docs in ``__init__``.
"""

from __future__ import annotations

import marshal
from functools import lru_cache
from typing import Any

from threadswoole.protocol.codec import Codec, Event, ProtocolError, register_event
from threadswoole.protocol.resp._inline import needs_exact as _needs_exact
from threadswoole.protocol.resp._inline import split_args, split_lines

__all__ = [
    "RespCodec",
    "RespCommand",
    "RespBatch",
    "DEFAULT_MAX_BULK_LENGTH",
    "DEFAULT_MAX_MULTIBULK_LENGTH",
    "DEFAULT_MAX_INLINE_LENGTH",
    "DEFAULT_MAX_QUERY_LENGTH",
]

DEFAULT_MAX_BULK_LENGTH = 2 * 1024 * 1024  # Swoole's package_max_length default (Redis: proto-max-bulk-len 512 MiB)
DEFAULT_MAX_MULTIBULK_LENGTH = 1024 * 1024  # arguments in one command (Redis before 7: 1024*1024)
DEFAULT_MAX_INLINE_LENGTH = 64 * 1024  # an inline line or a count line (Redis: PROTO_INLINE_MAX_SIZE)
DEFAULT_MAX_QUERY_LENGTH = 1024 * 1024 * 1024  # argument bytes of one command (Redis: client-query-buffer-limit)

_FAST_MAX_ARGS = 64  # commands with more arguments take the exact path
_FAST_MAX_BULK = 1024  # so do arguments longer than this


@lru_cache(maxsize=16)
def _fast_tables(max_args: int, max_bulk: int) -> tuple[dict[bytes, int], Any]:
    """The canonical ``*<n>`` count lines (-> n) and ``len -> b"$<len>"`` (``.get``) the fast path accepts."""
    counts = {b"*%d" % n: n for n in range(1, max_args + 1)}
    headers = {n: b"$%d" % n for n in range(max_bulk + 1)}
    return counts, headers.get


@lru_cache(maxsize=16)
def _header_list(max_bulk: int, max_args: int) -> list[bytes | None]:
    """``[b"$0", b"$1", ...]`` up to `max_bulk` (then None) for `feed`'s hot path: a list index is
    its cheapest lookup (data of at most _FAST_MAX_BULK bytes holds no longer argument); all
    None when commands of three arguments are over `max_args` (the hot path never matches)."""
    limit = max_bulk if max_args >= 3 else -1
    return [b"$%d" % n if n <= limit else None for n in range(_FAST_MAX_BULK + 1)]


def _string2ll(digits: bytes) -> int | None:
    """Redis's string2ll: a signed 64-bit decimal in canonical form (no sign '+', no leading zero, no blank)."""
    try:
        value = int(digits)
    except ValueError:
        return None
    if not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF or b"%d" % value != digits:
        return None
    return value


@register_event
class RespCommand(Event):
    """One Redis command: ``args[0]`` is the command name as sent, then its arguments (all ``bytes``)."""

    __slots__ = ("args",)
    wire_id = 20

    def __init__(self, args: list[bytes]) -> None:
        self.args = args

    def pack(self) -> bytes:
        return marshal.dumps(self.args)

    @classmethod
    def unpack(cls, data: bytes) -> "RespCommand":
        return cls(marshal.loads(data))

    def __repr__(self) -> str:
        return f"RespCommand({self.args!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is RespCommand and other.args == self.args

    __hash__ = None  # type: ignore[assignment]


@register_event
class RespBatch(tuple, Event):
    """The commands one ``feed`` completed, in order (``RespCodec(batch=True)``): one dispatch, one
    write. A tuple of commands (each a list of bytes), so that making one is a C call: it is made
    once per recv."""

    __slots__ = ()
    wire_id = 21

    @property
    def commands(self) -> list[list[bytes]]:
        """The commands as a list (the batch itself is a sequence of them)."""
        return list(self)

    def pack(self) -> bytes:
        return marshal.dumps(tuple(self))

    @classmethod
    def unpack(cls, data: bytes) -> "RespBatch":
        return cls(marshal.loads(data))

    def __repr__(self) -> str:
        return f"RespBatch({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is RespBatch and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


def _positive(name: str, value: Any) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class RespCodec(Codec):
    """Per-connection RESP request parser (``open_redis_protocol``); `feed` returns command events.

    Limits (each has a Redis error text; the connection is closed after it):
    ``max_bulk_length`` (one argument; the server passes ``package_max_length``),
    ``max_multibulk_length`` (arguments of one command), ``max_inline_length`` (an inline line or
    a ``*``/``$`` count line, without its ``\\n``), ``max_query_length`` (argument bytes of one
    command; closes without a reply, as Redis does). ``batch=True`` returns at most one
    `RespBatch` per feed instead of one `RespCommand` per command.
    """

    __slots__ = (
        "max_bulk_length", "max_multibulk_length", "max_inline_length", "max_query_length", "batch",
        "_buf", "_args", "_remaining", "_bulklen", "_pending", "_need", "_term", "_scan", "_wait_error",
        "_failed", "_counts", "_headers", "_check_size", "_ready", "_header_list", "_fast_limit",
    )  # fmt: skip
    protocol = "redis"

    def __init__(
        self,
        max_bulk_length: int = DEFAULT_MAX_BULK_LENGTH,
        max_multibulk_length: int = DEFAULT_MAX_MULTIBULK_LENGTH,
        max_inline_length: int = DEFAULT_MAX_INLINE_LENGTH,
        max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
        batch: bool = False,
    ) -> None:
        self.max_bulk_length = _positive("max_bulk_length", max_bulk_length)
        self.max_multibulk_length = _positive("max_multibulk_length", max_multibulk_length)
        self.max_inline_length = _positive("max_inline_length", max_inline_length)
        self.max_query_length = _positive("max_query_length", max_query_length)
        self.batch = bool(batch)
        self._counts, self._headers = _fast_tables(
            min(_FAST_MAX_ARGS, max_multibulk_length), min(_FAST_MAX_BULK, max_bulk_length)
        )
        self._check_size = max_query_length < _FAST_MAX_ARGS * _FAST_MAX_BULK
        self._header_list = _header_list(min(_FAST_MAX_BULK, max_bulk_length), max_multibulk_length)
        self._fast_limit = min(_FAST_MAX_BULK, max_inline_length)  # data the hot path takes (its lines are short)
        self._ready = not self._check_size  # nothing held, not failed: `feed` may take its hot path
        self._buf = bytearray()  # unconsumed bytes; always starts at a line or at a bulk's data
        self._args: list[bytes] | None = None  # arguments of a multibulk command cut by the end of the data
        self._remaining = 0  # arguments still to come for _args
        self._bulklen = -1  # length of the next argument once its $ line is read
        self._pending = 0  # bytes of the arguments in _args (for max_query_length)
        self._need = 0  # _buf must reach this length before parsing can go on
        self._term = b""  # ...or hold this line end (at or after _scan) once it is non-empty
        self._scan = 0
        self._wait_error: tuple[str, bytes] = ("", b"")  # raised when the awaited line grows too long
        self._failed: ProtocolError | None = None

    # -- the Codec interface -------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Any]:
        # Hot path (a client waiting for each reply, as redis-benchmark -P 1): the data is one
        # whole small command and nothing is held. A multibulk command of one to three
        # arguments (PING, GET key, SET key value) is split once, unpacked and checked one header
        # at a time; one inline line without quotes splits in one C call. Anything else, and
        # anything these checks do not vouch for, takes the general path (`_feed`).
        # (Callgrind, one feed: GET 13.4k -> ~5.5k instructions, SET 14.4k -> ~6k.)
        if self._ready and type(data) is bytes and 0 < len(data) <= self._fast_limit:
            if data[0] == 42:  # '*'
                parts = data.split(b"\r\n")
                size = len(parts)
                headers = self._header_list  # headers[n] == b"$<n>" (None past max_bulk_length)
                if size == 6:
                    count, head1, arg1, head2, arg2, end = parts
                    if count == b"*2" and not end and head1 == headers[len(arg1)] and head2 == headers[len(arg2)]:
                        return [RespBatch(([arg1, arg2],))] if self.batch else [RespCommand([arg1, arg2])]
                elif size == 8:
                    count, head1, arg1, head2, arg2, head3, arg3, end = parts
                    if (count == b"*3" and not end and head1 == headers[len(arg1)] and head2 == headers[len(arg2)]
                            and head3 == headers[len(arg3)]):
                        return [RespBatch(([arg1, arg2, arg3],))] if self.batch else [RespCommand([arg1, arg2, arg3])]
                elif size == 4:
                    count, head1, arg1, end = parts
                    if count == b"*1" and not end and head1 == headers[len(arg1)]:
                        return [RespBatch(([arg1],))] if self.batch else [RespCommand([arg1])]
                return self._feed(data, parts)
            if data[-1] == 10 and data.find(b"\n") == len(data) - 1 and _needs_exact(data) is None:
                # (the line holds no quotes, \v or \f: bytes.split() is split_args; blanks only: no command)
                args = data.split()
                if not args:
                    return []
                return [RespBatch((args,))] if self.batch else [RespCommand(args)]
        return self._feed(data)

    def _feed(self, data: bytes, parts: list[bytes] | None = None) -> list[Any]:
        """`feed` for everything but the hot path (`parts`: ``data.split(b"\\r\\n")``, if made)."""
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            if self._term and buf.find(self._term, self._scan) < 0:
                if len(buf) > self.max_inline_length:
                    raise self._fail(*self._wait_error, [])
                self._scan = len(buf)
                return []
            src = bytes(buf)
            self._buf = bytearray()
            self._need = 0
            self._term = b""
            out: list[list[bytes]] = []
            keep = self._run(src, out, 0)
        else:
            if self._failed is not None:
                raise ProtocolError(self._failed.reason, f"codec already failed ({self._failed})")
            if not data:
                return []
            src = data if type(data) is bytes else bytes(data)
            out = []
            if self._args is None and src[0] == 42:
                # Whole canonical commands, split at once; the rest (if any) byte by byte.
                if parts is None:
                    parts = src.split(b"\r\n")
                count = self._counts.get(parts[0])
                if count is not None and len(parts) == 2 * count + 2 and not parts[-1] and not self._check_size:
                    # Exactly one command (of any size the hot path does not take): _fast's
                    # checks for one command, without its loop.
                    args = parts[2::2]
                    if list(map(self._headers, map(len, args))) == parts[1:-1:2]:
                        self._ready = not self._check_size
                        return [RespBatch((args,))] if self.batch else [RespCommand(args)]
                stop = self._fast(src, 0, out, parts)
                keep = len(src) if stop == len(src) else self._run(src, out, stop, stop)
            else:
                keep = self._run(src, out, 0)
        if keep < len(src):
            self._buf = bytearray(memoryview(src)[keep:])
        self._ready = not self._buf and self._args is None and not self._check_size
        if self.batch:
            return [RespBatch(out)] if out else []
        return list(map(RespCommand, out))

    @property
    def buffered(self) -> int:
        """Bytes held for the command in progress (its unread bytes and its arguments so far)."""
        return len(self._buf) + self._pending

    @property
    def failed(self) -> bool:
        """True once `feed` has raised ProtocolError."""
        return self._failed is not None

    def detach(self) -> bytes:
        """Stop parsing; return the unparsed bytes (arguments of an unfinished command are dropped)."""
        data = bytes(self._buf)
        self._buf = bytearray()
        self._args = None
        self._pending = 0
        self._ready = self._failed is None and not self._check_size
        return data

    # -- parsing -------------------------------------------------------------------------------------
    def _run(self, src: bytes, out: list[list[bytes]], pos: int, no_fast_at: int = -1) -> int:
        """Parse `src` from `pos` (a line, or the data of the awaited bulk); return the first unconsumed offset.

        `no_fast_at`: where the fast path already stopped (it is not tried there again).
        """
        n = len(src)
        budget = n if no_fast_at >= 0 else n + n  # bytes the fast path may still split (keeps the total linear)
        max_inline = self.max_inline_length
        while pos < n:
            args = self._args
            if args is None:
                if src[pos] != 42:  # not '*': an inline command
                    nl = src.find(b"\n", pos)
                    if nl < 0 or nl - pos > max_inline:
                        return self._await(src, pos, b"\n", "too_big_inline", b"too big inline request", out)
                    end = nl - 1 if nl > pos and src[nl - 1] == 13 else nl
                    args = split_args(src[pos:end])
                    if args is None:
                        raise self._fail("unbalanced_quotes", b"unbalanced quotes in request", out)
                    pos = nl + 1
                    if args:
                        out.append(args)
                    if pos < n and src[pos] != 42:
                        # More inline lines after this one (telnet, PING_INLINE -P 16): if the rest
                        # is whole plain lines, split them all at once (16 PINGs: 91.7k -> 43k
                        # instructions, callgrind); a single line never pays for the check.
                        lines = split_lines(src[pos:], max_inline)
                        if lines is not None:
                            out += lines
                            return n
                    continue
                if pos != no_fast_at and n - pos <= budget:
                    budget -= n - pos
                    stop = self._fast(src, pos, out)
                    no_fast_at = stop
                    if stop != pos:
                        pos = stop
                        continue
                # The count line, Redis's way: up to the first '\r', and one more byte for the '\n'.
                cr = src.find(b"\r", pos)
                if cr < 0 or cr - pos > max_inline:
                    return self._await(src, pos, b"\r", "too_big_count", b"too big mbulk count string", out)
                if cr + 1 >= n:
                    self._need = cr + 2 - pos
                    return pos
                count = _string2ll(src[pos + 1 : cr])
                if count is None or count > self.max_multibulk_length:
                    raise self._fail("invalid_multibulk_length", b"invalid multibulk length", out)
                pos = cr + 2
                if count > 0:  # *0 and negative counts are skipped, as in Redis
                    self._args = []
                    self._remaining = count
                    self._bulklen = -1
                    self._pending = 0
                continue
            bulklen = self._bulklen
            if bulklen < 0:
                cr = src.find(b"\r", pos)
                if cr < 0 or cr - pos > max_inline:
                    return self._await(src, pos, b"\r", "too_big_count", b"too big bulk count string", out)
                if cr + 1 >= n:
                    self._need = cr + 2 - pos
                    return pos
                if src[pos] != 36:  # '$'
                    got = src[pos : pos + 1].replace(b"\r", b" ").replace(b"\n", b" ")
                    raise self._fail("expected_bulk", b"expected '$', got '" + got + b"'", out)
                bulklen = _string2ll(src[pos + 1 : cr])
                if bulklen is None or bulklen < 0 or bulklen > self.max_bulk_length:
                    raise self._fail("invalid_bulk_length", b"invalid bulk length", out)
                if self._pending + bulklen > self.max_query_length:
                    raise self._fail("query_too_large", b"", out)  # Redis closes such a client without a reply
                pos = cr + 2
                self._bulklen = bulklen
            end = pos + bulklen
            if end + 2 > n:
                self._need = end + 2 - pos
                return pos
            args.append(src[pos:end])
            pos = end + 2
            self._bulklen = -1
            self._pending += bulklen
            self._remaining -= 1
            if not self._remaining:
                out.append(args)
                self._args = None
                self._pending = 0
        return n

    def _fast(self, src: bytes, pos: int, out: list[list[bytes]], parts: list[bytes] | None = None) -> int:
        """Take the canonical multibulk commands at `pos` in one split (`parts`: that split of `src`,
        when `feed` made it already); return where the first other one starts."""
        if parts is None:
            parts = (src[pos:] if pos else src).split(b"\r\n")
        elif not self._check_size and self._uniform(parts, out):
            return len(src) - len(parts[-1])
        last = len(parts) - 1  # parts[last] has no CRLF after it: never a complete line
        # expected[j]: the "$<len>" line that must precede parts[j] if it is an argument (None: too long).
        expected = list(map(self._headers, map(len, parts)))
        counts = self._counts.get
        check_size = self._check_size
        i = 0
        while i < last:
            count = counts(parts[i])
            if count is None:
                break
            end = i + 1 + 2 * count
            # Past the data (cut by its end), or a bulk holding CRLF, or a header not "$<len>".
            if end > last or expected[i + 2 : end : 2] != parts[i + 1 : end : 2]:
                break
            args = parts[i + 2 : end : 2]
            if check_size and sum(map(len, args)) > self.max_query_length:
                break
            out.append(args)
            i = end
        if i == last:
            return len(src) - len(parts[last])
        if not i:
            return pos
        return pos + sum(map(len, parts[:i])) + 2 * i

    def _uniform(self, parts: list[bytes], out: list[list[bytes]]) -> bool:
        """A pipeline of one shape (every command with as many arguments as the first: 16 GETs,
        16 SETs), whole: checked and cut column by column, a few C-level slices per argument
        position instead of some per command (16 GETs: 8.8k -> 6.9k instructions per command,
        callgrind). False (nothing taken) for anything else: the general loop decides."""
        last = len(parts) - 1
        first = parts[0]
        count = self._counts.get(first)
        if count is None:
            return False
        step = 2 * count + 1  # the count line, then a header and an argument per argument
        commands, rest = divmod(last, step)
        if rest or commands < 2 or parts[0:last:step] != [first] * commands:
            return False
        headers = self._headers
        columns = []
        for at in range(2, step, 2):  # argument at//2 of every command, and the headers before them
            column = parts[at:last:step]
            if list(map(headers, map(len, column))) != parts[at - 1 : last : step]:
                return False
            columns.append(column)
        out += map(list, zip(*columns))
        return True

    def _await(self, src: bytes, pos: int, term: bytes, reason: str, message: bytes, out: list[list[bytes]]) -> int:
        """Wait for the line end `term` of the line at `pos`, or fail if that line is already too long."""
        end = src.find(term, pos)
        length = (end if end >= 0 else len(src)) - pos
        if length > self.max_inline_length:
            raise self._fail(reason, message, out)
        self._term = term
        self._scan = length
        self._wait_error = (reason, message)
        return pos

    def _fail(self, reason: str, message: bytes, out: list[list[bytes]]) -> ProtocolError:
        """Enter the failed state; the error carries Redis's reply and the commands completed before."""
        self._buf = bytearray()
        self._args = None
        self._pending = 0
        self._ready = False
        response = b"-ERR Protocol error: " + message + b"\r\n" if message else b""
        detail = message.decode("latin-1") or "query larger than max_query_length"
        events: list[Any] = ([RespBatch(out)] if out else []) if self.batch else list(map(RespCommand, out))
        self._failed = ProtocolError(reason, detail, response)
        return ProtocolError(reason, detail, response, events)
