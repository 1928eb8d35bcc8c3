"""The reference's windows: every fed reading kept in a list, statistics computed from scratch.

Plain Python for ``rules.reference``; the same semantics as ``rules.evaluators.buckets`` and
``rules.evaluators.learn`` (docs/rules.md, "Windows in time").
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

NAN = math.nan


@dataclass
class History:
    """The readings fed to one owner (a series or a wound), bucketed by ``ts // res``."""

    res: int
    keep: int  # buckets kept: the completed ones any window reads, plus the open one
    readings: list[tuple[int, float]] = field(default_factory=list)
    open_key: int | None = None

    def roll(self, t: int) -> bool:
        """Open the bucket of ``t`` if newer; whether ``t`` falls in the open bucket."""
        key = t // self.res
        if self.open_key is not None and key < self.open_key:
            return False
        if self.open_key is None or key > self.open_key:
            self.open_key = key
            self.readings = [(ts, v) for ts, v in self.readings if ts // self.res > key - self.keep]
        return True

    def feed(self, t: int, v: float) -> bool:
        """Roll and add one reading; whether it was added."""
        if not self.roll(t):
            return False
        self.readings.append((t, v))
        return True

    def bucket(self, key: int) -> list[float]:
        """The values in bucket ``key``, in the order fed."""
        return [v for ts, v in self.readings if ts // self.res == key]

    def completed(self, back_from: int, count: int) -> list[list[float]]:
        """``count`` completed buckets, oldest first, the first ``back_from`` before the open."""
        assert self.open_key is not None
        start = self.open_key - back_from
        return [self.bucket(start + i) for i in range(count)]


def total(buckets: list[list[float]], open_bucket: list[float], f: str) -> float:
    """Window sum of ``f`` (n, sum, sumsq or a 0/1 match list): bucket sums added oldest first."""
    sums = [_sum(b, f) for b in buckets]
    return float(sum(sums)) + _sum(open_bucket, f)


def _sum(values: list[float], f: str) -> float:
    if f == "n":
        return float(len(values))
    if f == "sumsq":
        return float(sum(v * v for v in values))
    return float(sum(values))


def statistic(buckets: list[list[float]], kind: str, min_coverage: float) -> float:
    """Median of bucket means, or mean of all values; NaN below ``min_coverage`` filled."""
    filled = [b for b in buckets if b]
    if not filled or len(filled) / len(buckets) < min_coverage:
        return NAN
    if kind == "mean":
        return sum(sum(b) for b in filled) / sum(float(len(b)) for b in filled)
    return statistics.median([sum(b) / float(len(b)) for b in filled])


@dataclass
class Learnt:
    """A baseline learnt once: the median of bucket means over ``span`` from the first reading."""

    span: int
    res: int
    min_coverage: float
    start: int = -1
    slots: dict[int, list[float]] = field(default_factory=dict)
    value: float = NAN
    ready: bool = False

    def feed(self, t: int, v: float) -> None:
        """Learn from one reading; close (or restart) the span once it has ended."""
        if self.ready:
            return
        if self.start < 0:
            self.start = t
        if t >= self.start + self.span:
            width = self.span // self.res
            value = statistic(
                [self.slots.get(i, []) for i in range(width)], "median", self.min_coverage
            )
            if not math.isnan(value):
                self.value, self.ready = value, True
                return
            self.start, self.slots = t, {}
        if t < self.start:
            return
        self.slots.setdefault((t - self.start) // self.res, []).append(v)
