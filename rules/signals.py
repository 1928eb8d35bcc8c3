"""Vectorized per-reading signals and condition tests over many series at once."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rules.model import Condition

EMPTY_TS = np.iinfo(np.int64).min  # ring slot never written
_FAR = np.iinfo(np.int64).max
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


def count_in_window(cond: Condition, ring_ts: I64, ring_val: F64, now: I64, span: int) -> F64:
    """Readings in the ring newer than ``now - span`` that pass ``cond``, per row."""
    inside = ring_ts > (now - span)[:, None]
    counts: F64 = np.count_nonzero(inside & test(cond, ring_val), axis=1).astype(np.float64)
    return counts


def rate_per_hour(
    ring_ts: I64, ring_val: F64, now: I64, value: F64, span: int, min_span: int
) -> F64:
    """Change per hour from the oldest ring reading inside the window to the current one."""
    inside = ring_ts > (now - span)[:, None]
    masked = np.where(inside, ring_ts, _FAR)
    oldest = np.argmin(masked, axis=1)
    rows = np.arange(ring_ts.shape[0])
    t_old = ring_ts[rows, oldest]
    v_old = ring_val[rows, oldest]
    dt = now - t_old
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (value - v_old) / (dt / _US_PER_HOUR)
    return np.where((dt > 0) & (dt >= min_span), rate, np.nan)


def zscore(ring_ts: I64, ring_val: F64, now: I64, value: F64, span: int, min_count: int) -> F64:
    """The value's z-score against earlier ring readings inside the window (population std)."""
    # 0 < age < span as one unsigned compare; never-written slots wrap to huge ages
    age = (now[:, None] - ring_ts - 1).view(np.uint64)
    prior = age < np.uint64(span - 1)
    n = np.count_nonzero(prior, axis=1).astype(np.float64)
    kept = ring_val * prior  # unused ring slots hold 0.0, so no NaN leaks in
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = kept.sum(axis=1) / n
        var = np.einsum("ij,ij->i", kept, kept) / n - mean * mean
        std = np.sqrt(np.maximum(var, 0.0))
        z = (value - mean) / std
    return np.where((n >= min_count) & (std > 0), z, np.nan)


def row_median(buf: F64, count: I64) -> F64:
    """Median of the first ``count`` entries of each row (unused entries are NaN)."""
    ordered = np.sort(buf, axis=1)  # NaN sorts last, so the used entries come first
    rows = np.arange(buf.shape[0])
    low = ordered[rows, (count - 1) // 2]
    high = ordered[rows, count // 2]
    return (low + high) / 2
