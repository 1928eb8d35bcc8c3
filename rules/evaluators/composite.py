"""Composite rules: AND/OR over other rules' active states on the same device."""

from __future__ import annotations

import numpy as np

from contract.alert import AlertEvent, AlertTransition
from rules.context import I64, Bool, EngineState, device_level
from rules.evidence import composite_event
from rules.model import AnyRule, CompositeRule

RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED


def device_active(ctx: EngineState, rule: AnyRule) -> Bool:
    """Per device: is ``rule`` active on any of its series."""
    active = ctx.state[rule.id]["active"]
    if device_level(rule):
        copy: Bool = active[: ctx.n_dev].copy()
        return copy
    out = np.zeros(ctx.n_dev, dtype=np.bool_)
    out[ctx.series["dev"][: ctx.n_series][active[: ctx.n_series]]] = True
    return out


class CompositeEvaluator:
    """One composite, stepped per device after its components (rules are in dependency order)."""

    def __init__(self, rule: CompositeRule, ctx: EngineState, by_id: dict[str, AnyRule]) -> None:
        self.rule = rule
        self.ctx = ctx
        self.components = [by_id[c] for c in rule.components]

    def may_change(self) -> bool:
        """Whether the composite is active anywhere or its components could raise it."""
        n_active = self.ctx.n_active
        counts = [n_active[c.id] > 0 for c in self.components]
        could_raise = all(counts) if self.rule.all_of is not None else any(counts)
        return could_raise or n_active[self.rule.id] > 0

    def step(self, at_us: I64, events: list[AlertEvent]) -> None:
        """Raise or clear on devices with an ``at_us`` (> 0), at that time."""
        if not self.may_change():
            return
        ctx, rule = self.ctx, self.rule
        parts = np.vstack([device_active(ctx, c) for c in self.components])
        every: Bool = np.all(parts, axis=0)
        some: Bool = np.any(parts, axis=0)
        on = every if rule.all_of is not None else some
        off = ~every if rule.clear_rule == "not_all_active" else ~some
        active = ctx.state[rule.id]["active"]
        idx = np.flatnonzero((at_us > 0) & ctx.scope[rule.id][: ctx.n_dev])
        was = active[idx]
        raise_ = ~was & on[idx]
        clear = was & off[idx]
        active[idx[raise_]] = True
        active[idx[clear]] = False
        ctx.n_active[rule.id] += int(np.count_nonzero(raise_)) - int(np.count_nonzero(clear))
        for d in idx[raise_ | clear].tolist():
            names = [c for c, p in zip(rule.components, parts[:, d], strict=True) if p]
            transition = RAISED if active[d] else CLEARED
            events.append(
                composite_event(rule, ctx.devices.ids[d], transition, int(at_us[d]), names)
            )
