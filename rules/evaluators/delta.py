"""Delta rules: the reading minus a baseline of its own, or minus a reference device's reading."""

from __future__ import annotations

from typing import Any

import numpy as np

from rules.context import F64, I64, EngineState, Idx
from rules.evaluators.base import SignalEvaluator
from rules.model import DeltaBaselineRule, DeltaReferenceRule
from rules.signals import row_median
from rules.state import Arrays


class BaselineEvaluator(SignalEvaluator):
    """Value minus the median of the series' first ``baseline``; NaN while it is learnt."""

    rule: DeltaBaselineRule

    def add_state(self, state: Arrays) -> None:
        """The baseline's start, samples and median."""
        state.add("base_start", np.int64, -1)
        state.add("base_n", np.intp, 0)
        state.add("base_buf", np.float64, np.nan, width=self.rule.baseline_samples)
        state.add("base_value", np.float64, np.nan)
        state.add("base_ready", np.bool_, False)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Value minus the baseline median; samples are taken until the baseline closes."""
        rule = self.rule
        st = self.state
        ready = st["base_ready"][s]
        if ready.all():
            done: F64 = v - st["base_value"][s]
            return done
        start = st["base_start"][s]
        start = np.where(start < 0, t, start)
        st["base_start"][s] = start
        learning = ~ready & (t < start + rule.baseline)
        count = st["base_n"][s]
        take = learning & (count < rule.baseline_samples)
        st["base_buf"].reshape(-1)[s[take] * rule.baseline_samples + count[take]] = v[take]
        st["base_n"][s[take]] = count[take] + 1
        closing = ~ready & ~learning
        if closing.any():
            closed = s[closing]
            st["base_value"][closed] = row_median(st["base_buf"][closed], st["base_n"][closed])
            st["base_ready"][closed] = True
        delta: F64 = np.where(ready | closing, v - st["base_value"][s], np.nan)
        return delta

    def extra(self, s: int) -> dict[str, Any]:
        """The baseline the reading was compared with."""
        return {"baseline": float(self.state["base_value"][s])}


class ReferenceEvaluator(SignalEvaluator):
    """Value minus the reference device's latest value of the same metric, as of the last batch.

    Each series' reference series is resolved when it appears; a reference device not seen
    yet stays pending until its series appears.
    """

    rule: DeltaReferenceRule

    def __init__(self, rule: DeltaReferenceRule, ctx: EngineState) -> None:
        self.pending: dict[int, str] = {}  # series -> its reference device, not seen yet
        super().__init__(rule, ctx)

    def add_state(self, state: Arrays) -> None:
        """The reference series of each series (-1: none or not seen yet)."""
        state.add("ref_series", np.intp, -1)

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Difference to the reference's last value, NaN without one or when it is too old."""
        ser = self.ctx.series
        ref = self.state["ref_series"][s]
        has = ref >= 0
        ref_c = np.where(has, ref, 0)
        ref_ts = ser["last_ts"][ref_c]  # not yet updated: as of the previous batch
        ok = has & (ref_ts > 0) & (np.abs(t - ref_ts) <= self.rule.max_age)
        delta: F64 = np.where(ok, v - ser["last_val"][ref_c], np.nan)
        return delta

    def extra(self, s: int) -> dict[str, Any]:
        """The reference device and the value compared with."""
        ctx = self.ctx
        ref = int(self.state["ref_series"][s])
        return {
            "reference_device": ctx.device_id(ref),
            "reference_value": float(ctx.series["last_val"][ref]),
        }

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
