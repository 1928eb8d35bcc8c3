"""Vectorized per-reading signals and condition tests over many series at once."""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

from rules.model import Condition

EMPTY_TS = np.iinfo(np.int64).min  # ring slot never written
_US_PER_HOUR = 3.6e9

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]


def test(cond: Condition, signal: F64) -> Bool:
    """Where ``signal`` passes the condition; NaN never passes."""
    op, a, b = cond.test
    if op == "above":
        return signal > a
    if op == "below":
        return signal < a
    if op == "at_least":
        return signal >= a
    if op == "at_most":
        return signal <= a
    if op == "outside":
        return (signal < a) | (signal > b)
    return (signal >= a) & (signal <= b)


def disjoint(a: Condition, b: Condition) -> bool:
    """Whether no value passes both conditions.

    Each condition is a union of intervals with endpoints among the thresholds, so their
    intersection, if not empty, holds a threshold, a midpoint between two or a point beyond.
    """
    ends = sorted({a.test[1], a.test[2], b.test[1], b.test[2]})
    probes = [*ends, ends[0] - 1.0, ends[-1] + 1.0]
    probes += [(lo + hi) / 2 for lo, hi in itertools.pairwise(ends)]
    values = np.array(probes)
    return not bool(np.any(test(a, values) & test(b, values)))


def zscore_of(
    value: F64, n: F64, total: F64, total_sq: F64, min_count: int, min_std: float = 0.0
) -> F64:
    """The value's z-score from the count, sum and sum of squares of the earlier readings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        var = total_sq / n - mean * mean
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), min_std)
        z = (value - mean) / std
    return np.where((n >= min_count) & (std > 0), z, np.nan)


def rate_of(value: F64, now: I64, v_old: F64, t_old: I64, min_span: int) -> F64:
    """Change per hour from (t_old, v_old) to (now, value); NaN below ``min_span``."""
    dt = now - t_old
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (value - v_old) / (dt / _US_PER_HOUR)
    return np.where((dt > 0) & (dt >= min_span), rate, np.nan)


def row_median(buf: F64, count: I64) -> F64:
    """Median of the first ``count`` entries of each row (unused entries are NaN)."""
    ordered = np.sort(buf, axis=1)  # NaN sorts last, so the used entries come first
    rows = np.arange(buf.shape[0])
    low = ordered[rows, (count - 1) // 2]
    high = ordered[rows, count // 2]
    return (low + high) / 2
