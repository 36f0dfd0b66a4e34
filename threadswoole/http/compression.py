"""Response compression: pick gzip or deflate from ``Accept-Encoding`` and compress with zlib.

`choose_encoding` follows RFC 9110 §12.5.3 q-values: the coding with the highest q wins, gzip
before deflate on a tie, ``*`` stands for any coding not listed, ``q=0`` refuses. ``deflate``
is the zlib format (RFC 1950), which is what every browser expects for it. Results are cached
per header value (clients send the same few strings).
"""

from __future__ import annotations

import zlib
from functools import lru_cache

__all__ = ["ENCODINGS", "choose_encoding", "compress", "StreamCompressor"]

#: Supported content codings -> zlib ``wbits``.
ENCODINGS = {"gzip": 31, "deflate": 15}


@lru_cache(maxsize=128)
def choose_encoding(accept_encoding: str | None, *, absent_means_any: bool = False) -> str | None:
    """The coding to use for this ``Accept-Encoding`` value ("gzip", "deflate"), or None.

    With no header at all, None unless `absent_means_any` (RFC 9110: no header means any
    coding is acceptable; automatic compression stays off then, an explicit
    ``Response.gzip()`` uses gzip).
    """
    if accept_encoding is None:
        return "gzip" if absent_means_any else None
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip(" \t")
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip(" \t") == "q":
                try:
                    q = float(value.strip(" \t"))
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if coding == "x-gzip":
            coding = "gzip"
        weights[coding] = max(q, weights.get(coding, q))
    star = weights.get("*")
    best: str | None = None
    best_q = 0.0
    for coding in ENCODINGS:  # gzip first: wins ties
        q = weights.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    return best


def compress(data: bytes, encoding: str, level: int) -> bytes:
    """The whole body compressed as `encoding` ("gzip" or "deflate") at `level` 1..9."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, ENCODINGS[encoding])
    return compressor.compress(data) + compressor.flush()


class StreamCompressor:
    """Compresses a body written piece by piece (`Response.write` after `gzip()`).

    Each piece is flushed with Z_SYNC_FLUSH so the client can decode it at once.
    """

    __slots__ = ("encoding", "_compressor")

    def __init__(self, encoding: str, level: int) -> None:
        self.encoding = encoding
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, ENCODINGS[encoding])

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush()
