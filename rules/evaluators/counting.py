"""Counting windows: repeating (matches), proportion (share that matches) and z-score.

The window of ``W`` at resolution ``R`` holds the readings of the last ``W / R`` buckets, the
open one included: between ``W - R`` and ``W`` of history. Completed buckets are summed once,
when a bucket closes (``tot_*``, derived state); each reading adds the open bucket's sums.
"""

from __future__ import annotations

import numpy as np

from rules.context import F64, I64, EngineState, Idx
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.buckets import Buckets
from rules.model import ProportionRule, RepeatingRule, ZScoreRule
from rules.signals import test, zscore_of
from rules.state import Arrays


class CountingEvaluator(SignalEvaluator):
    """Buckets of per-series sums and their totals over the completed part of the window."""

    fields: tuple[str, ...] = ()
    rule: RepeatingRule | ProportionRule | ZScoreRule

    def __init__(self, rule: RepeatingRule | ProportionRule | ZScoreRule, ctx: EngineState) -> None:
        span = rule.within if isinstance(rule, RepeatingRule) else rule.window
        self.span = span
        super().__init__(rule, ctx)

    def add_state(self, state: Arrays) -> None:
        """The buckets: the window's completed ones in a ring, plus the open one."""
        res = self.rule.res_us
        self.buckets = Buckets(state, "b_", self.fields, self.span // res - 1, res)

    def add_derived(self, derived: Arrays) -> None:
        """Totals over the completed buckets."""
        for f in self.fields:
            derived.add("tot_" + f, np.float64, 0.0)

    def roll(self, s: Idx, t: I64) -> None:
        """Roll the buckets of series ``s`` to ``t`` and refresh their completed totals."""
        rolled, _ = self.buckets.roll(s, t)
        if len(rolled):
            self._totals(s[rolled])

    def _totals(self, s: Idx) -> None:
        for f in self.fields:
            self.derived["tot_" + f][s] = self.buckets.totals(s, f)

    def window_sum(self, s: Idx, field: str) -> F64:
        """Completed totals plus the open bucket, per series."""
        out: F64 = self.derived["tot_" + field][s] + self.buckets.cur(field)[s]
        return out

    def rebuild(self, ids: Idx) -> None:
        """Totals from the buckets (after a restore)."""
        super().rebuild(ids)
        self._totals(ids[self.ctx.series["metric"][ids] == self.code])


class RepeatingEvaluator(CountingEvaluator):
    """The signal is the count of matches in the window, this reading included."""

    fields = ("match",)
    rule: RepeatingRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Matches within the window."""
        self.roll(s, t)
        self.buckets.add(s, {"match": test(self.rule.match, v).astype(np.float64)})
        return self.window_sum(s, "match")


class ProportionEvaluator(CountingEvaluator):
    """The signal is the share of the window's readings that match, this one included."""

    fields = ("n", "match")
    rule: ProportionRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Matches over readings in the window; NaN below ``min_count`` readings."""
        self.roll(s, t)
        match = test(self.rule.match, v).astype(np.float64)
        self.buckets.add(s, {"n": np.ones(len(s)), "match": match})
        n = self.window_sum(s, "n")
        share: F64 = np.where(n >= self.rule.min_count, self.window_sum(s, "match") / n, np.nan)
        return share


class ZScoreEvaluator(CountingEvaluator):
    """The reading against the mean and spread of the window's earlier readings."""

    fields = ("n", "sum", "sumsq")
    rule: ZScoreRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """The z-score against the window before this reading, which then joins it."""
        self.roll(s, t)
        rule = self.rule
        n = self.window_sum(s, "n")
        signal = zscore_of(
            v,
            n,
            self.window_sum(s, "sum"),
            self.window_sum(s, "sumsq"),
            rule.min_count,
            rule.min_std,
        )
        self.buckets.add(s, {"n": np.ones(len(s)), "sum": v, "sumsq": v * v})
        return signal
