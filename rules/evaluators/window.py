"""Raw-ring windows (rate): running counts over the series' ring of recent readings.

The window of a series is its last ``n`` ring readings, ``n`` kept per (rule, series) instead of
rescanning the ring: each new reading joins it, the oldest leave when they fall out of the time
window or the ring overwrites them. A raw-ring window holds at most ``window_capacity``
readings, whatever its stated length: the bucketed kinds (``rules.evaluators.counting``,
``rules.evaluators.smoothed``) are the ones for long windows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rules.context import I64, Idx
from rules.evaluators.base import SignalEvaluator
from rules.signals import EMPTY_TS
from rules.state import Arrays

Dropped = Callable[[Idx, Idx], None]  # (rows leaving the window, their flat ring slots)


class WindowEvaluator(SignalEvaluator):
    """A rule whose signal reads the readings of a time window from the ring."""

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

    def rebuild(self, ids: Idx) -> None:
        """Window counts of ``ids`` from their rings."""
        super().rebuild(ids)
        ctx = self.ctx
        rows = ids[ctx.series["metric"][ids] == self.code]
        ring_ts, _ = ctx.ring.rows(rows)
        self.derived["n"][rows] = np.count_nonzero(ring_ts != EMPTY_TS, axis=1)
