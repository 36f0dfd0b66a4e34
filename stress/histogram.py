"""Log-linear latency histogram (HDR-style), bounded in memory and mergeable.

Why: the load generator runs in several processes and records one latency
per request; keeping every sample would be an unbounded list, so each process
counts samples into fixed buckets and the parent adds the bucket arrays up.

Values are integers (microseconds here). Values below ``2**SUB_BITS`` get one
bucket each; above that every power-of-two range is cut into
``2**(SUB_BITS-1)`` equal sub-buckets, so the relative error of a reported
percentile is below ``1 / 2**(SUB_BITS-1)`` (under 1 % with SUB_BITS=8).
"""
from __future__ import annotations

SUB_BITS = 8
_SUB = 1 << SUB_BITS              # 256 exact buckets for small values
_HALF = _SUB >> 1                 # sub-buckets per power of two above that
MAX_VALUE = (1 << 40) - 1         # ~12.7 days in microseconds: clamp above
_NBUCKETS = _SUB + (MAX_VALUE.bit_length() - SUB_BITS) * _HALF


def _index(value: int) -> int:
    if value < _SUB:
        return value if value > 0 else 0
    if value > MAX_VALUE:
        value = MAX_VALUE
    shift = value.bit_length() - SUB_BITS
    return _SUB + (shift - 1) * _HALF + ((value >> shift) - _HALF)


def _bucket_range(index: int) -> tuple[int, int]:
    """Lowest and highest value that fall into bucket ``index``."""
    if index < _SUB:
        return index, index
    shift = (index - _SUB) // _HALF + 1
    top = (index - _SUB) % _HALF + _HALF
    return top << shift, ((top + 1) << shift) - 1


class Histogram:
    """Counts of integer samples in log-linear buckets; ``merge`` adds another."""

    __slots__ = ("counts", "total", "min", "max", "sum")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * _NBUCKETS
        self.total = 0
        self.min = 0
        self.max = 0
        self.sum = 0

    def record(self, value: int) -> None:
        value = int(value)
        self.counts[_index(value)] += 1
        if self.total == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.total += 1
        self.sum += value

    def merge(self, other: "Histogram") -> "Histogram":
        if other.total:
            counts = self.counts
            for i, c in enumerate(other.counts):
                if c:
                    counts[i] += c
            self.min = other.min if self.total == 0 else min(self.min, other.min)
            self.max = max(self.max, other.max)
            self.total += other.total
            self.sum += other.sum
        return self

    def percentile(self, p: float) -> float:
        """Value at percentile ``p`` (0-100): midpoint of its bucket, clamped to min/max."""
        if self.total == 0:
            return 0.0
        if p <= 0:
            return float(self.min)
        if p >= 100:
            return float(self.max)
        rank = p / 100.0 * self.total
        seen = 0
        for i, c in enumerate(self.counts):
            if c:
                seen += c
                if seen >= rank:
                    lo, hi = _bucket_range(i)
                    mid = (lo + hi) / 2.0
                    return float(min(max(mid, self.min), self.max))
        return float(self.max)

    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def p999(self) -> float:
        return self.percentile(99.9)

    # Compact form for pickling across processes / JSON: only non-empty buckets.
    def to_dict(self) -> dict:
        return {"buckets": {i: c for i, c in enumerate(self.counts) if c},
                "total": self.total, "min": self.min, "max": self.max, "sum": self.sum}

    @classmethod
    def from_dict(cls, d: dict) -> "Histogram":
        h = cls()
        for i, c in d["buckets"].items():
            h.counts[int(i)] = c
        h.total, h.min, h.max, h.sum = d["total"], d["min"], d["max"], d["sum"]
        return h

    def __getstate__(self) -> dict:
        return self.to_dict()

    def __setstate__(self, state: dict) -> None:
        h = Histogram.from_dict(state)
        for name in self.__slots__:
            setattr(self, name, getattr(h, name))

    def __repr__(self) -> str:
        return (f"Histogram(n={self.total}, p50={self.p50:.0f}us, p99={self.p99:.0f}us, "
                f"p999={self.p999:.0f}us, max={self.max}us)")
