"""Smoothed windows over completed buckets: rolling statistics and trends.

``rolling``: the median of the window's bucket means (or the mean of its readings). ``trend``:
such a recent value (or the reading itself) minus a reference, the statistic of the window just
before it or the learnt baseline, optionally per unit of time. Both read completed buckets only,
so they change when a bucket closes: they are computed then, for the owners that rolled, and
each reading just looks its owner's value up.

A trend's history is the wound's by default (``history: wound``): kept on the wound's anchor
series, fed by the wound's current patch outside its exclusion window after application, so a
new patch continues the same history instead of starting blind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rules.context import F64, I64, Bool, EngineState, Idx
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.buckets import NO_KEY, Buckets, bucket_statistic
from rules.evaluators.learn import Learner
from rules.model import RollingRule, TrendRule
from rules.state import Arrays


class RollingEvaluator(SignalEvaluator):
    """The statistic of the completed window, per series."""

    rule: RollingRule

    def add_state(self, state: Arrays) -> None:
        """The window's completed buckets and the open one."""
        res = self.rule.res_us
        self.buckets = Buckets(state, "b_", ("n", "sum"), self.rule.window // res, res)

    def add_derived(self, derived: Arrays) -> None:
        """The statistic, refreshed when a bucket closes."""
        derived.add("stat", np.float64, np.nan)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """The owner's statistic after this reading joined its bucket."""
        rolled, _ = self.buckets.feed(s, t, {"n": np.ones(len(s)), "sum": v})
        if len(rolled):
            self._refresh(s[rolled])
        out: F64 = self.derived["stat"][s]
        return out

    def _refresh(self, o: Idx) -> None:
        b, rule, m = self.buckets, self.rule, self.buckets.slots
        self.derived["stat"][o] = bucket_statistic(
            b.window(o, "sum", m, m), b.window(o, "n", m, m), rule.statistic, rule.min_coverage
        )

    def rebuild(self, ids: Idx) -> None:
        """The statistic from the buckets (after a restore)."""
        super().rebuild(ids)
        o = ids[self.ctx.series["metric"][ids] == self.code]
        self._refresh(o[self.buckets.open_key()[o] != NO_KEY])

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """The statistic's window."""
        return {"statistic": self.rule.statistic, "window_us": self.rule.window}


def excluded(ctx: EngineState, s: Idx, t: I64, exclude: int) -> Bool:
    """Readings inside their patch's exclusion window after its first reading."""
    out: Bool = t < ctx.dev["first_ts"][ctx.series["dev"][s]] + exclude
    return out


class TrendEvaluator(SignalEvaluator):
    """Recent statistic (or reading) minus the prior window's, or minus the learnt baseline."""

    rule: TrendRule

    def __init__(self, rule: TrendRule, ctx: EngineState) -> None:
        res = rule.res_us
        self.n_recent = rule.window // res
        self.n_prior = rule.prior // res
        self.scale = 1.0
        if rule.per is not None:  # the windows' centres are this many `per` apart
            self.scale = (self.n_recent + self.n_prior) * res / 2 / rule.per
        super().__init__(rule, ctx)

    def add_state(self, state: Arrays) -> None:
        """Buckets of the recent and prior windows; the baseline; the held reference."""
        rule = self.rule
        res = rule.res_us
        self.buckets = Buckets(state, "b_", ("n", "sum"), self.n_recent + self.n_prior, res)
        self.learner: Learner | None = None
        if rule.against == "baseline":
            self.learner = Learner(state, "base_", rule.baseline, res, rule.min_coverage)
        state.add("held", np.float64, np.nan)

    def add_derived(self, derived: Arrays) -> None:
        """The recent and prior statistics, refreshed when a bucket closes."""
        derived.add("recent", np.float64, np.nan)
        derived.add("prior", np.float64, np.nan)

    def owners(self, s: Idx) -> Idx:
        """Whose history each series reads: its wound's anchor series, or itself."""
        if self.rule.history == "series":
            return s
        out: Idx = self.ctx.series_x["owner"][s]
        return out

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Recent minus reference; NaN inside the exclusion window or while unknown."""
        rule = self.rule
        o = self.owners(s)
        out = excluded(self.ctx, s, t, rule.exclude)
        fed = np.flatnonzero(~out & self.ctx.series_x["current"][s])
        if len(fed):
            of, tf, vf = o[fed], t[fed], v[fed]
            rolled, _ = self.buckets.feed(of, tf, {"n": np.ones(len(fed)), "sum": vf})
            if len(rolled):
                self._refresh(of[rolled])
            if self.learner is not None:
                self.learner.feed(of, tf, vf)
        recent = v if self.n_recent == 0 else self.derived["recent"][o]
        ref = self.reference(s, o)
        trend: F64 = np.where(out, np.nan, (recent - ref) / self.scale)
        return trend

    def reference(self, s: Idx, o: Idx) -> F64:
        """What each reading's recent value is compared with."""
        if self.learner is not None:
            ref: F64 = self.learner.value()[o]
        else:
            ref = self.derived["prior"][o]
        if self.rule.hold_reference:
            held = self.state["held"][s]
            ref = np.where(np.isnan(held), ref, held)
        return ref

    def transitioned(self, raised: Idx, cleared: Idx) -> None:
        """Hold the reference at the raise, release it at the clear."""
        if self.rule.hold_reference:
            self.state["held"][raised] = self.reference(raised, self.owners(raised))
            self.state["held"][cleared] = np.nan

    def reset(self, s: Idx) -> None:
        """A superseded patch releases its held reference."""
        super().reset(s)
        self.state["held"][s] = np.nan

    def _refresh(self, o: Idx) -> None:
        b, rule = self.buckets, self.rule
        m = b.slots
        if self.n_recent:
            self.derived["recent"][o] = bucket_statistic(
                b.window(o, "sum", self.n_recent, self.n_recent),
                b.window(o, "n", self.n_recent, self.n_recent),
                rule.statistic,
                rule.min_coverage,
            )
        if self.n_prior:
            self.derived["prior"][o] = bucket_statistic(
                b.window(o, "sum", m, self.n_prior),
                b.window(o, "n", m, self.n_prior),
                rule.statistic,
                rule.min_coverage,
            )

    def rebuild(self, ids: Idx) -> None:
        """Recent and prior statistics from the buckets (after a restore)."""
        super().rebuild(ids)
        o = np.unique(self.owners(ids[self.ctx.series["metric"][ids] == self.code]))
        self._refresh(o[self.buckets.open_key()[o] != NO_KEY])

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """The two values compared."""
        o = self.owners(np.array([s]))
        ref = float(self.reference(np.array([s]), o)[0])
        out: dict[str, Any] = {"reference": ref, "against": self.rule.against}
        if self.n_recent:
            out["recent"] = float(self.derived["recent"][o[0]])
        return out
