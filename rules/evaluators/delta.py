"""Delta rules: the reading minus the patient's learnt baseline, or minus a reference device.

Baselines and learnt contralateral offsets belong to the wound (``history: wound``): a new patch
of the same wound inherits them. See ``rules.evaluators.learn`` for how they are learnt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rules.context import F64, I64, Bool, EngineState, Idx
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.history import excluded, feeding, owners, unless_excluded
from rules.evaluators.learn import Learner
from rules.model import DeltaBaselineRule, DeltaReferenceRule
from rules.state import Arrays
from rules.wounds import reference_series


class BaselineEvaluator(SignalEvaluator):
    """Value minus the wound's (or series') learnt baseline; NaN while it is learnt."""

    rule: DeltaBaselineRule

    def add_state(self, state: Arrays) -> None:
        """The baseline being learnt."""
        rule = self.rule
        dense = self.ctx.metric_state(rule.id, self.code)
        self.learner = Learner(dense, "base_", rule.baseline, rule.res_us, rule.min_coverage)

    def owners(self, s: Idx) -> Idx:
        """Whose baseline each series uses."""
        return owners(self.ctx, s, self.rule.history)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Value minus the baseline; readings outside the exclusion window teach it first."""
        r = self.ctx.rows(self.owners(s))
        out = excluded(self.ctx, s, t, self.rule.exclude)
        if not self.learner.all_ready(r):
            fed = feeding(self.ctx, s, out)
            if fed is None:
                self.learner.feed(r, t, v)
            else:
                self.learner.feed(r[fed], t[fed], v[fed])
        delta: F64 = v - self.learner.value()[r]
        if out is not None:
            delta[out] = np.nan
        return delta

    def learnt_baseline(self, s: Idx) -> tuple[F64, F64] | None:
        """The wound's baseline and the last reading compared with it (NaN inside the patch's
        exclusion window, as its signal is)."""
        r = self.ctx.rows(self.owners(s))
        current = unless_excluded(self.ctx, s, self.ctx.series["last_val"][s], self.rule.exclude)
        return self.learner.value()[r], current

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """The baseline the reading was compared with."""
        row = self.ctx.rows(self.owners(np.array([s])))[0]
        return {"baseline": float(self.learner.value()[row])}


class ReferenceEvaluator(SignalEvaluator):
    """Value minus the reference device's latest value of the same metric, as of the last batch.

    The reference is the rule's ``references`` entry or the registry's ``reference`` device
    (resolved when its series appears), or the current patch of the registry's
    ``reference_wound``. With ``offset`` the pair first learns its normal difference, which is
    then subtracted. A missing or stale reference (older than ``max_age``) forces the clear
    test, so an alert on it clears instead of staying up on data that no longer comes.
    """

    rule: DeltaReferenceRule

    def __init__(self, rule: DeltaReferenceRule, ctx: EngineState) -> None:
        self.pending: dict[int, str] = {}  # series -> its reference device, not seen yet
        super().__init__(rule, ctx)

    def add_state(self, state: Arrays) -> None:
        """The fixed reference series of each series (-1: none or not seen yet); the offset."""
        state.add("ref_series", np.intp, -1)
        self.learner: Learner | None = None
        offset = self.rule.offset
        if offset is not None:
            dense = self.ctx.metric_state(self.rule.id, self.code)
            self.learner = Learner(dense, "off_", offset.learn, offset.res_us, offset.min_coverage)

    def refs(self, s: Idx) -> Idx:
        """The reference series now (-1: none)."""
        fixed: Idx = self.state["ref_series"][s]
        if not self.ctx.wound_series:
            return fixed
        dynamic = reference_series(self.ctx, s, self.code)
        out: Idx = np.where(dynamic >= 0, dynamic, fixed)
        return out

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Difference to the reference's last value (less the learnt offset), NaN without one."""
        ser = self.ctx.series
        ref = self.refs(s)
        has = ref >= 0
        ref_c = np.where(has, ref, 0)
        ref_ts = ser["last_ts"][ref_c]  # not yet updated: as of the previous batch
        ok = has & (ref_ts > 0) & (np.abs(t - ref_ts) <= self.rule.max_age)
        self.forced = ~ok
        delta: F64 = np.where(ok, v - ser["last_val"][ref_c], np.nan)
        if self.learner is None:
            return delta
        offset = self.rule.offset
        assert offset is not None
        o = self.ctx.rows(owners(self.ctx, s, "wound"))
        inside: Bool = ok
        if offset.exclude and int(t.min()) < self.ctx.newest_first + offset.exclude:
            dev, first = ser["dev"], self.ctx.dev["first_ts"]
            inside = ok & (t >= np.maximum(first[dev[s]], first[dev[ref_c]]) + offset.exclude)
        if not self.learner.all_ready(o):
            teach = inside
            if self.ctx.wound_members:  # only the wound's current patch teaches it
                teach = inside & self.ctx.series_x["current"][s]
            rows = np.flatnonzero(teach)
            self.learner.feed(o[rows], t[rows], delta[rows])
        out: F64 = np.where(inside, delta - self.learner.value()[o], np.nan)
        return out

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """The reference device and value compared with, or that it is missing or stale."""
        ctx = self.ctx
        ref = int(self.refs(np.array([s]))[0])
        if ref < 0:
            return {"reference_missing": True}
        last = int(ctx.series["last_ts"][ref])
        out: dict[str, Any] = {
            "reference_device": ctx.device_id(ref),
            "reference_value": float(ctx.series["last_val"][ref]),
        }
        if not (last > 0 and abs(t - last) <= self.rule.max_age):
            out["reference_stale"] = True
            out["reference_last_us"] = last
        if self.learner is not None:
            row = ctx.rows(owners(ctx, np.array([s]), "wound"))[0]
            out["offset"] = float(self.learner.value()[row])
        return out

    def on_new_series(self, ids: Idx) -> None:
        """Resolve the reference series of new series, and of pending ones now present."""
        ctx = self.ctx
        for s in ids[ctx.series["metric"][ids] == self.code].tolist():
            device_id = ctx.device_id(s)
            info = ctx.registry.get(device_id)
            ref = self.rule.references.get(device_id) or (info.reference if info else None)
            if ref:
                self.pending[s] = ref
        ref_series = self.state["ref_series"]
        for s, ref in list(self.pending.items()):
            ref_dev = ctx.devices.get(ref)
            if ref_dev is None or ref_dev >= ctx.n_dev:
                continue
            found = int(ctx.table["series"][ref_dev, self.code])
            if found >= 0:
                ref_series[s] = found
                del self.pending[s]
