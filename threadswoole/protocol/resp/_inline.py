"""Inline commands (what telnet and ``redis-cli`` in inline mode send): one line split like Redis.

Redis splits an inline line with ``sdssplitargs`` (sds.c): tokens are separated by blanks;
``"..."`` takes the escapes ``\\n \\r \\t \\b \\a \\xHH`` and ``\\<any>``; ``'...'`` takes only
``\\'``; a closing quote must be followed by a blank or the end of the line, and an
unterminated quote is an error. This module does the same, with one deliberate difference:
a NUL byte is an ordinary character here (Redis's C strings stop at it, so it cannot parse
such a line at all).
"""

from __future__ import annotations

import re

__all__ = ["split_args", "split_lines", "needs_exact"]

# C isspace() in the "C" locale: what sdssplitargs skips between tokens.
_BLANKS = frozenset(b" \t\n\v\f\r")
# What ends an unquoted token (\v and \f do not: they are kept inside a token).
_TOKEN_END = frozenset(b" \n\r\t")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_BACKSLASH, _DQUOTE, _SQUOTE, _X = ord("\\"), ord('"'), ord("'"), ord("x")

# A line without quotes, \v or \f splits exactly like bytes.split() (one C call).
_NEEDS_EXACT = re.compile(rb"[\"'\x0b\x0c]").search
needs_exact = _NEEDS_EXACT  # match(line) is None: split_args(line) == line.split()


def split_args(line: bytes) -> list[bytes] | None:
    """The arguments of one inline command line (without its line ending); None if its quotes are unbalanced."""
    if _NEEDS_EXACT(line) is None:
        return line.split()
    return _split_exact(line)


def split_lines(data: bytes, max_line: int) -> list[list[bytes]] | None:
    """The commands of `data` when it is whole inline lines only (it ends with a line end, no
    line starts with ``*``, none holds quotes, \v or \f or is longer than `max_line`): each line
    split with one C call, blank ones skipped. None for anything else (the exact path decides).
    (RespCodec uses it for the lines after a first one: 16 PINGs in about half the cost.)"""
    if data[-1:] != b"\n" or data[:1] == b"*" or b"\n*" in data or _NEEDS_EXACT(data) is not None:
        return None
    lines = data.split(b"\n")
    lines.pop()  # the empty piece after the last line end
    if max(map(len, lines)) > max_line:
        return None
    # A line's "\r" before its "\n" is a blank to bytes.split() as it is to sdssplitargs.
    return [args for args in map(bytes.split, lines) if args]


def _split_exact(line: bytes) -> list[bytes] | None:
    """sdssplitargs, character by character (only lines with quotes, \\v or \\f come here)."""
    args: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        token = bytearray()
        in_double = in_single = False
        while True:
            c = line[i] if i < n else -1  # -1 plays the C string's terminating NUL
            if in_double:
                if c == _BACKSLASH and i + 3 < n and line[i + 1] == _X and line[i + 2] in _HEX and line[i + 3] in _HEX:
                    token.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == _BACKSLASH and i + 1 < n:
                    i += 1
                    token.append(_ESCAPES.get(line[i], line[i]))
                elif c == _DQUOTE:
                    if i + 1 < n and line[i + 1] not in _BLANKS:
                        return None  # closing quote followed by something else
                    break
                elif c < 0:
                    return None  # unterminated "
                else:
                    token.append(c)
            elif in_single:
                if c == _BACKSLASH and i + 1 < n and line[i + 1] == _SQUOTE:
                    i += 1
                    token.append(_SQUOTE)
                elif c == _SQUOTE:
                    if i + 1 < n and line[i + 1] not in _BLANKS:
                        return None
                    break
                elif c < 0:
                    return None  # unterminated '
                else:
                    token.append(c)
            elif c < 0 or c in _TOKEN_END:
                break
            elif c == _DQUOTE:
                in_double = True
            elif c == _SQUOTE:
                in_single = True
            else:
                token.append(c)
            i += 1
        if i < n:
            i += 1  # past the closing quote or the blank that ended the token
        args.append(bytes(token))
