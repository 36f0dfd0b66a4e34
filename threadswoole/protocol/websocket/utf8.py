"""Incremental UTF-8 validation of text messages that fails on the first impossible byte.

RFC 6455 §8.1: an endpoint receiving invalid UTF-8 in a text message fails the connection
(1007), and Autobahn 6.4.* checks it does so as soon as the bad bytes arrive, even in the middle
of a fragment, not when the message is complete. CPython's incremental UTF-8 decoder already
rejects an impossible prefix (``F4 90``, ``E0 80``, ``C0``) as soon as it sees it, with one
exception: it holds ``ED A0``..``ED BF`` (the start of an encoded UTF-16 surrogate, never valid
UTF-8) as a pending partial character. `Utf8Validator` adds that check.
"""

from __future__ import annotations

import codecs

__all__ = ["Utf8Validator", "is_utf8"]

_Decoder = codecs.getincrementaldecoder("utf-8")


def is_utf8(data: bytes | bytearray | memoryview) -> bool:
    """True if `data` is complete, valid UTF-8."""
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Utf8Validator:
    """Feed the pieces of one text message; `feed` and `finish` return False once it is invalid."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Decoder()

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Validate the next piece; False as soon as no continuation can make the message valid."""
        decoder = self._decoder
        try:
            decoder.decode(data, False)
        except UnicodeDecodeError:
            return False
        pending = decoder.getstate()[0]
        # The one impossible prefix CPython keeps pending: ED followed by A0-BF (a surrogate).
        return not (len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0)

    def finish(self) -> bool:
        """True if the message ended on a character boundary (nothing pending)."""
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError:
            return False
        return True
