"""Counting windows: repeating (matches), proportion (share that matches) and z-score.

The window of ``W`` at resolution ``R`` holds the readings of the last ``W / R`` buckets, the
open one included: between ``W - R`` and ``W`` of history. The totals over the completed
buckets (``tot_*``, derived state) change only when a bucket closes: the closed bucket joins,
the oldest leaves, and once per ring turn they are re-summed from the ring so that rounding
cannot drift; each reading adds the open bucket's sums.
"""

from __future__ import annotations

import numpy as np

from rules.context import F64, I64, EngineState, Idx
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.buckets import Buckets
from rules.model import ProportionRule, RepeatingRule, ZScoreRule
from rules.runs import as_index
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
        """The buckets (one row per series of the metric) and their completed totals."""
        res = self.rule.res_us
        self.dense = self.ctx.metric_state(self.rule.id, self.code)
        self.buckets = Buckets(self.dense, "b_", self.fields, self.span // res - 1, res)
        for f in self.fields:  # derived: rebuilt from the ring on restore
            self.dense.add("tot_" + f, np.float64, 0.0)

    def roll(self, r: Idx, t: I64) -> None:
        """Roll the buckets of rows ``r`` to ``t``, keeping their completed totals."""
        self.buckets.roll(r, t, {f: self.dense["tot_" + f] for f in self.fields})

    def window_sum(self, r: Idx, field: str) -> F64:
        """Completed totals plus the open bucket, per row."""
        at = as_index(r)
        out: F64 = self.dense["tot_" + field][at] + self.buckets.cur(field)[at]
        return out

    def rebuild(self, ids: Idx) -> None:
        """Totals from the buckets (after a restore)."""
        super().rebuild(ids)
        r = self.ctx.rows(ids[self.ctx.series["metric"][ids] == self.code])
        for f in self.fields:
            self.dense["tot_" + f][r] = self.buckets.totals(r, f)


class RepeatingEvaluator(CountingEvaluator):
    """The signal is the count of matches in the window, this reading included."""

    fields = ("match",)
    rule: RepeatingRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Matches within the window."""
        r = self.ctx.rows(s)
        self.roll(r, t)
        self.buckets.add(r, {"match": test(self.rule.match, v).astype(np.float64)})
        return self.window_sum(r, "match")


class ProportionEvaluator(CountingEvaluator):
    """The signal is the share of the window's readings that match, this one included."""

    fields = ("n", "match")
    rule: ProportionRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Matches over readings in the window; NaN below ``min_count`` readings."""
        r = self.ctx.rows(s)
        self.roll(r, t)
        match = test(self.rule.match, v).astype(np.float64)
        self.buckets.add(r, {"n": 1.0, "match": match})
        n = self.window_sum(r, "n")
        with np.errstate(divide="ignore", invalid="ignore"):
            share: F64 = np.where(n >= self.rule.min_count, self.window_sum(r, "match") / n, np.nan)
        return share


class ZScoreEvaluator(CountingEvaluator):
    """The reading against the mean and spread of the window's earlier readings."""

    fields = ("n", "sum", "sumsq")
    rule: ZScoreRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """The z-score against the window before this reading, which then joins it."""
        r = self.ctx.rows(s)
        self.roll(r, t)
        rule = self.rule
        n = self.window_sum(r, "n")
        total, total_sq = self.window_sum(r, "sum"), self.window_sum(r, "sumsq")
        signal = zscore_of(v, n, total, total_sq, rule.min_count, rule.min_std)
        self.buckets.add(r, {"n": 1.0, "sum": v, "sumsq": v * v})
        return signal
