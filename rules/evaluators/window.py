"""What the window kinds (repeating, rate, zscore) share: running counts over the series' ring.

The window of a series is its last ``n`` ring readings, ``n`` kept per (rule, series) instead of
rescanning the ring: each new reading joins it, the oldest leave when they fall out of the time
window or are about to be overwritten by the next push.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rules.context import F64, I64, Idx
from rules.evaluators.base import SignalEvaluator
from rules.signals import EMPTY_TS
from rules.state import Arrays

Dropped = Callable[[Idx, Idx], None]  # (rows leaving the window, their flat ring slots)


class WindowEvaluator(SignalEvaluator):
    """A rule whose signal reads the readings of a time window from the ring."""

    window = True

    def add_derived(self, derived: Arrays) -> None:
        """``n``: ring readings still inside the window."""
        derived.add("n", np.intp, 0)

    def evict(self, s: Idx, head: Idx, n: Idx, limit: I64, back: int, dropped: Dropped) -> None:
        """Drop readings at or before ``limit`` from the oldest end of each window (updates n).

        ``back`` is 1 when the window includes the current reading (its oldest is ``n - 1``
        slots back from ``head``), 0 when it holds only earlier ones.
        """
        ctx = self.ctx
        cap = ctx.window_capacity
        ring_ts, _ = ctx.ring.flat()
        stride = ctx.ring.capacity
        keep_min = 1 - back  # the current reading itself never leaves (t > t - span)
        rows = np.flatnonzero(n > keep_min)
        while len(rows):
            tail = (head[rows] - n[rows] + back) % cap * stride + s[rows]
            out = ring_ts[tail] <= limit[rows]
            if not out.any():
                break
            rows, tail = rows[out], tail[out]
            n[rows] -= 1
            dropped(rows, tail)
            rows = rows[n[rows] > keep_min]

    def make_room(self, s: Idx, head: Idx, n: Idx) -> tuple[Idx, F64]:
        """Full windows let their oldest leave while readable: the next push overwrites it.

        Returns the rows affected and the values leaving.
        """
        cap = self.ctx.window_capacity
        full = np.flatnonzero(n == cap)
        if len(full) == 0:
            return full, np.empty(0)
        _, ring_val = self.ctx.ring.flat()
        old: F64 = ring_val[(head[full] + 1) % cap * self.ctx.ring.capacity + s[full]]
        n[full] -= 1
        return full, old

    def rebuild(self, ids: Idx) -> None:
        """Window counts (and sums) of ``ids`` from their rings."""
        super().rebuild(ids)
        ctx = self.ctx
        rows = ids[ctx.series["metric"][ids] == self.code]
        ring_ts, ring_val = ctx.ring.rows(rows)
        filled = np.count_nonzero(ring_ts != EMPTY_TS, axis=1)
        # What the window state holds right after a reading: at most cap - 1 readings for
        # z-score and repeating (the next push evicts one), all ring readings for rate.
        n = self.rebuilt_count(filled)
        self.derived["n"][rows] = n
        newest = ctx.series["ring_head"][rows] - 1
        self.rebuild_sums(rows, ring_val, n, newest)

    def rebuilt_count(self, filled: Idx) -> Idx:
        """The window count after a reading, given how many ring slots are filled."""
        capped: Idx = np.minimum(filled, self.ctx.window_capacity - 1)
        return capped

    def rebuild_sums(self, rows: Idx, ring_val: F64, n: Idx, newest: Idx) -> None:
        """Recompute the kind's running sums (series-major ``ring_val`` of ``rows``)."""

    def window_values(self, ring_val: F64, newest: Idx, back: int) -> F64:
        """Per row, the ring value ``back`` readings before the newest."""
        cap = self.ctx.window_capacity
        values: F64 = ring_val[np.arange(len(newest)), (newest - back) % cap]
        return values
