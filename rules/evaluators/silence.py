"""Silence rules: no reading of a metric (or of any metric of a device) for ``after``.

Raised by ticks, cleared by the series' (or device's) first accepted reading in a batch, at
that reading's time or, for a reading stamped before the tick that raised the alert (it was
buffered on the way), at the raise: a clear never precedes its raise. A superseded patch is not
silent: it was taken off.
"""

from __future__ import annotations

import numpy as np

from contract.alert import AlertEvent, AlertTransition
from rules.context import I64, NOT_RETIRED, EngineState, Idx
from rules.evidence import silence_event
from rules.model import SilenceRule

RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
NO_READING = np.iinfo(np.int64).max  # a device's first reading in a batch, when it has none


class SilenceEvaluator:
    """One silence rule, per series of its metric or, without one, per device."""

    def __init__(self, rule: SilenceRule, ctx: EngineState) -> None:
        self.rule = rule
        self.ctx = ctx
        self.per_device = rule.scope.metric is None
        self.code = -1 if rule.scope.metric is None else ctx.codes[rule.scope.metric]
        self.active = ctx.state[rule.id]  # "active", and when it was raised
        self.active.add("raised_at", np.int64, 0)

    @property
    def any_active(self) -> bool:
        """Whether the rule is raised anywhere (else nothing can clear)."""
        return self.ctx.n_active[self.rule.id] > 0

    def tick(self, now_us: int, events: list[AlertEvent]) -> None:
        """Raise where the last reading is at least ``after`` before ``now_us``."""
        ctx, rule = self.ctx, self.rule
        active = self.active["active"]
        if self.per_device:
            n = ctx.n_dev
            last = ctx.dev["last_ts"][:n]
            scope = ctx.scope[rule.id][:n] & (ctx.dev["retired_at"][:n] == NOT_RETIRED)
            ids: Idx = np.arange(n)
        else:
            n = ctx.n_series
            last = ctx.series["last_ts"][:n]
            ids = ctx.series["dev"][:n]
            scope = (ctx.series["metric"][:n] == self.code) & ctx.scope[rule.id][ids]
            scope &= ctx.dev["retired_at"][ids] == NOT_RETIRED
        fire = np.flatnonzero(scope & ~active[:n] & (last > 0) & (now_us - last >= rule.after))
        active[fire] = True
        self.active["raised_at"][fire] = now_us
        ctx.n_active[rule.id] += len(fire)
        for i in fire.tolist():
            device_id = ctx.devices.ids[int(ids[i])]
            events.append(silence_event(rule, device_id, RAISED, now_us, int(last[i])))

    def clear_series(self, s: Idx, t: I64, events: list[AlertEvent]) -> None:
        """Series ``s`` got their first accepted reading of the batch (at ``t``)."""
        if self.per_device or not self.any_active:
            return
        ctx = self.ctx
        active = self.active["active"]
        hit = np.flatnonzero(active[s])
        active[s[hit]] = False
        ctx.n_active[self.rule.id] -= len(hit)
        for i in hit.tolist():
            si = int(s[i])
            last = int(ctx.series["last_ts"][si])
            at = max(int(t[i]), int(self.active["raised_at"][si]))
            events.append(silence_event(self.rule, ctx.device_id(si), CLEARED, at, last))

    def clear_devices(self, dev_first: I64, events: list[AlertEvent]) -> None:
        """Devices with a first accepted reading in the batch (``dev_first``) end their silence."""
        if not self.per_device:
            return
        ctx = self.ctx
        active = self.active["active"][: ctx.n_dev]
        hit = np.flatnonzero(active & (dev_first < NO_READING))
        active[hit] = False
        ctx.n_active[self.rule.id] -= len(hit)
        for d in hit.tolist():
            last = int(ctx.dev["last_ts"][d])
            at = max(int(dev_first[d]), int(self.active["raised_at"][d]))
            events.append(silence_event(self.rule, ctx.devices.ids[d], CLEARED, at, last))
