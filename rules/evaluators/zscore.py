"""Z-score rules: the reading against the mean and spread of the earlier readings in ``window``."""

from __future__ import annotations

import numpy as np

from rules.context import F64, I64, Idx
from rules.evaluators.window import WindowEvaluator
from rules.model import ZScoreRule
from rules.signals import zscore_of
from rules.state import Arrays


class ZScoreEvaluator(WindowEvaluator):
    """Running sum and sum of squares of the window, re-summed once per ring turn."""

    rule: ZScoreRule

    def add_derived(self, derived: Arrays) -> None:
        """``n``, ``sum`` and ``sumsq`` of the readings before the current one."""
        super().add_derived(derived)
        derived.add("sum", np.float64, 0.0)
        derived.add("sumsq", np.float64, 0.0)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """The z-score against the window before this reading, which then joins it."""
        assert head is not None  # window rules always have a ring
        rule = self.rule
        d = self.derived
        _, ring_val = self.ctx.ring.flat()
        n = d["n"][s]
        total = d["sum"][s]
        total_sq = d["sumsq"][s]

        def dropped(rows: Idx, tail: Idx) -> None:
            old = ring_val[tail]
            total[rows] -= old
            total_sq[rows] -= old * old

        # The window is the readings before this one, so its oldest is n back, not n - 1.
        self.evict(s, head, n, t - rule.window, 0, dropped)
        empty = n == 0
        total[empty] = 0.0  # an empty window restarts its sums exactly
        total_sq[empty] = 0.0
        signal = zscore_of(v, n, total, total_sq, rule.min_count, rule.min_std)
        n += 1
        total += v
        total_sq += v * v
        full, old = self.make_room(s, head, n)
        if len(full):
            total[full] -= old
            total_sq[full] -= old * old
        self._rebase(s, n, head, total, total_sq)
        d["sumsq"][s] = total_sq
        d["sum"][s] = total
        d["n"][s] = n
        return signal

    def _rebase(self, s: Idx, n: Idx, head: Idx, total: F64, total_sq: F64) -> None:
        """Re-sum windows from the ring once per ring turn, so rounding cannot drift.

        Staggered by series so that a fleet in lock step does not re-sum all at once.
        """
        cap = self.ctx.window_capacity
        rows = np.flatnonzero(head == s % cap)
        if len(rows) == 0:
            return
        _, ring_val = self.ctx.ring.flat()
        stride = self.ctx.ring.capacity
        sr = s[rows]
        nn = n[rows]
        back = np.arange(cap - 1, -1, -1)  # oldest first, the order a plain sum adds them in
        slots = (head[rows, None] - back) % cap * stride + sr[:, None]
        val = np.where(nn[:, None] > back, ring_val[slots], 0.0)
        # cumsum adds left to right, one element at a time, like the reference's sum()
        total[rows] = np.cumsum(val, axis=1)[:, -1]
        total_sq[rows] = np.cumsum(val * val, axis=1)[:, -1]

    def rebuild_sums(self, rows: Idx, ring_val: F64, n: Idx, newest: Idx) -> None:
        """Sum and sum of squares of the last ``n`` ring readings, oldest first."""
        total = np.zeros(len(rows))
        total_sq = np.zeros(len(rows))
        for back in range(self.ctx.window_capacity - 1, -1, -1):
            use = n > back
            val = self.window_values(ring_val, newest, back)
            total += np.where(use, val, 0.0)
            total_sq += np.where(use, val * val, 0.0)
        self.derived["sum"][rows] = total
        self.derived["sumsq"][rows] = total_sq
