"""Repeating rules: how many readings within ``within`` matched ``match``."""

from __future__ import annotations

import numpy as np

from rules.context import F64, I64, Idx
from rules.evaluators.window import WindowEvaluator
from rules.model import RepeatingRule
from rules.signals import test
from rules.state import Arrays


class RepeatingEvaluator(WindowEvaluator):
    """The signal is the count of matches among the window's readings, this one included."""

    rule: RepeatingRule

    def add_derived(self, derived: Arrays) -> None:
        """``n`` and ``sum``: the matches inside the window."""
        super().add_derived(derived)
        derived.add("sum", np.float64, 0.0)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Matches within the window, counted incrementally over the ring."""
        assert head is not None  # window rules always have a ring
        rule = self.rule
        d = self.derived
        _, ring_val = self.ctx.ring.flat()
        n = d["n"][s]
        total = d["sum"][s]
        n += 1
        n[n > self.ctx.window_capacity] = self.ctx.window_capacity
        total += test(rule.match, v)

        def dropped(rows: Idx, tail: Idx) -> None:
            total[rows] -= test(rule.match, ring_val[tail])

        self.evict(s, head, n, t - rule.within, 1, dropped)
        signal: F64 = total.astype(np.float64)
        full, old = self.make_room(s, head, n)
        if len(full):
            total[full] -= test(rule.match, old)
        d["sum"][s] = total
        d["n"][s] = n
        return signal

    def rebuild_sums(self, rows: Idx, ring_val: F64, n: Idx, newest: Idx) -> None:
        """Matches among the last ``n`` ring readings."""
        total = np.zeros(len(rows))
        for back in range(self.ctx.window_capacity - 1, -1, -1):
            total += (n > back) & test(self.rule.match, self.window_values(ring_val, newest, back))
        self.derived["sum"][rows] = total
