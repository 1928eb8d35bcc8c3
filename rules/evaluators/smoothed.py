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

from rules.context import F64, I64, EngineState, Idx
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.buckets import NO_KEY, Buckets, bucket_statistic
from rules.evaluators.history import excluded, feeding, owners, unless_excluded
from rules.evaluators.learn import Learner
from rules.model import RollingRule, TrendRule
from rules.runs import as_index
from rules.state import Arrays


class RollingEvaluator(SignalEvaluator):
    """The statistic of the completed window, per series."""

    rule: RollingRule

    def add_state(self, state: Arrays) -> None:
        """The window's completed buckets and the open one; the statistic (derived)."""
        res = self.rule.res_us
        self.dense = self.ctx.metric_state(self.rule.id, self.code)
        self.buckets = Buckets(self.dense, "b_", ("n", "sum"), self.rule.window // res, res)
        self.dense.add("stat", np.float64, np.nan)  # refreshed when a bucket closes

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """The series' statistic after this reading joined its bucket."""
        r = self.ctx.rows(s)
        rolled, _ = self.buckets.feed(r, t, {"n": 1.0, "sum": v})
        if len(rolled):
            self._refresh(r[rolled])
        out: F64 = self.dense["stat"][as_index(r)].copy()  # a signal outlives the next refresh
        return out

    def _refresh(self, r: Idx) -> None:
        b, rule, m = self.buckets, self.rule, self.buckets.slots
        self.dense["stat"][r] = bucket_statistic(
            b.window(r, "sum", m, m), b.window(r, "n", m, m), rule.statistic, rule.min_coverage
        )

    def rebuild(self, ids: Idx) -> None:
        """The statistic from the buckets (after a restore)."""
        super().rebuild(ids)
        r = self.ctx.rows(ids[self.ctx.series["metric"][ids] == self.code])
        self._refresh(r[self.buckets.open_key()[r] != NO_KEY])

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """The statistic's window."""
        return {"statistic": self.rule.statistic, "window_us": self.rule.window}


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
        self.dense = dense = self.ctx.metric_state(rule.id, self.code)
        self.buckets = Buckets(dense, "b_", ("n", "sum"), self.n_recent + self.n_prior, res)
        self.learner: Learner | None = None
        if rule.against == "baseline":
            self.learner = Learner(dense, "base_", rule.baseline, res, rule.min_coverage)
        dense.add("recent", np.float64, np.nan)  # derived: refreshed when a bucket closes
        dense.add("prior", np.float64, np.nan)
        state.add("held", np.float64, np.nan)
        self.n_held = 0  # series holding a reference: none (the usual case) skips the lookup

    def owners(self, s: Idx) -> Idx:
        """Whose history each series reads: its wound's anchor series, or itself."""
        return owners(self.ctx, s, self.rule.history)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Recent minus reference; NaN inside the exclusion window or while unknown."""
        r = self.ctx.rows(self.owners(s))
        out = excluded(self.ctx, s, t, self.rule.exclude)
        fed = feeding(self.ctx, s, out)
        rf, tf, vf = (r, t, v) if fed is None else (r[fed], t[fed], v[fed])
        if len(rf):
            rolled, _ = self.buckets.feed(rf, tf, {"n": 1.0, "sum": vf})
            if len(rolled):
                self._refresh(rf[rolled])
            if self.learner is not None:
                self.learner.feed(rf, tf, vf)
        recent = v if self.n_recent == 0 else self.dense["recent"][as_index(r)]
        trend: F64 = recent - self.reference(s, r)
        if self.scale != 1.0:
            trend /= self.scale
        if out is not None:
            trend[out] = np.nan
        return trend

    def reference(self, s: Idx, r: Idx) -> F64:
        """What each reading's recent value is compared with (``r``: its history's rows)."""
        at = as_index(r)
        if self.learner is not None:
            ref: F64 = self.learner.value()[at]
        else:
            ref = self.dense["prior"][at]
        if self.n_held:
            held = self.state["held"][s]
            ref = np.where(np.isnan(held), ref, held)
        return ref

    def transitioned(self, raised: Idx, cleared: Idx) -> None:
        """Hold the reference at the raise, release it at the clear."""
        if self.rule.hold_reference:
            rows = self.ctx.rows(self.owners(raised))
            self._hold(raised, self.reference(raised, rows))
            self._hold(cleared, np.full(len(cleared), np.nan))

    def reset(self, s: Idx) -> None:
        """A superseded patch releases its held reference."""
        super().reset(s)
        self._hold(s, np.full(len(s), np.nan))

    def _hold(self, s: Idx, reference: F64) -> None:
        """Hold ``reference`` for series ``s`` (each once; NaN releases), keeping the count."""
        held = self.state["held"]
        self.n_held += int(np.count_nonzero(~np.isnan(reference)))
        self.n_held -= int(np.count_nonzero(~np.isnan(held[s])))
        held[s] = reference

    def _refresh(self, r: Idx) -> None:
        b, rule = self.buckets, self.rule
        m = b.slots
        if self.n_recent:
            self.dense["recent"][r] = bucket_statistic(
                b.window(r, "sum", self.n_recent, self.n_recent),
                b.window(r, "n", self.n_recent, self.n_recent),
                rule.statistic,
                rule.min_coverage,
            )
        if self.n_prior:
            self.dense["prior"][r] = bucket_statistic(
                b.window(r, "sum", m, self.n_prior),
                b.window(r, "n", m, self.n_prior),
                rule.statistic,
                rule.min_coverage,
            )

    def rebuild(self, ids: Idx) -> None:
        """Recent and prior statistics from the buckets (after a restore); the held count."""
        super().rebuild(ids)
        self.n_held = int(np.count_nonzero(~np.isnan(self.state["held"])))
        o = np.unique(self.owners(ids[self.ctx.series["metric"][ids] == self.code]))
        r = self.ctx.rows(o)
        self._refresh(r[self.buckets.open_key()[r] != NO_KEY])

    def learnt_baseline(self, s: Idx) -> tuple[F64, F64] | None:
        """The wound's baseline and the recent statistic (the reading, without a window)
        compared with it; NaN inside the patch's exclusion window, as its signal is."""
        if self.learner is None:
            return None
        r = self.ctx.rows(self.owners(s))
        current = self.dense["recent"][r] if self.n_recent else self.ctx.series["last_val"][s]
        return self.learner.value()[r], unless_excluded(self.ctx, s, current, self.rule.exclude)

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """The two values compared."""
        r = self.ctx.rows(self.owners(np.array([s])))
        ref = float(self.reference(np.array([s]), r)[0])
        out: dict[str, Any] = {"reference": ref, "against": self.rule.against}
        if self.n_recent:
            out["recent"] = float(self.dense["recent"][r[0]])
        return out
