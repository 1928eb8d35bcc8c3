"""Composite rules: all of, any of or at least k of other rules active on the same device.

Composites follow their components' transitions in time order: after a batch (or tick) the
transitions of its component rules are replayed per device, oldest first, and the composite is
stepped at each distinct time, so a combination that held only in the middle of a batch is seen
whatever the batching, and every composite event carries the time of the transition behind it
(never earlier than the composite's previous event). With ``for`` the combination must hold that
long: the composite raises at the device's first reading, or tick, at or after.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from contract.alert import AlertEvent, AlertTransition
from rules.context import I64, Bool, EngineState, Idx, device_level
from rules.evidence import composite_event
from rules.model import AnyRule, CompositeRule

RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
FOREVER = np.iinfo(np.int64).max


def device_active(ctx: EngineState, rule: AnyRule) -> Bool:
    """Per device: is ``rule`` active on any of its series."""
    active = ctx.state[rule.id]["active"]
    if device_level(rule):
        copy: Bool = active[: ctx.n_dev].copy()
        return copy
    out = np.zeros(ctx.n_dev, dtype=np.bool_)
    out[ctx.series["dev"][: ctx.n_series][active[: ctx.n_series]]] = True
    return out


def active_on(ctx: EngineState, rule: AnyRule, d: int) -> bool:
    """Whether ``rule`` is active on device ``d`` now."""
    if device_level(rule):
        return bool(ctx.state[rule.id]["active"][d])
    metric = rule.scope.metric
    assert metric is not None
    s = int(ctx.table["series"][d, ctx.codes[metric]])
    return s >= 0 and bool(ctx.state[rule.id]["active"][s])


class Observed:
    """When each device was observed in a batch (its accepted readings), or at a tick."""

    def __init__(
        self, readings: Callable[[], tuple[Idx, I64]] | None = None, tick: int | None = None
    ) -> None:
        self.tick = tick
        self._readings = readings  # (device, ts) of the batch's accepted readings, on demand
        self._sorted: tuple[Idx, I64] | None = None

    def first(self, d: int, lo: int, hi: int) -> int | None:
        """The first observation of device ``d`` at or after ``lo`` and before ``hi``."""
        if self.tick is not None:
            return self.tick if lo <= self.tick < hi else None
        if self._sorted is None:
            assert self._readings is not None
            dev, t = self._readings()
            order = np.lexsort((t, dev))
            self._sorted = (dev[order], t[order])
        dev, t = self._sorted
        a, b = np.searchsorted(dev, d, "left"), np.searchsorted(dev, d, "right")
        i = a + int(np.searchsorted(t[a:b], lo, "left"))
        if i < b and int(t[i]) < hi:
            return int(t[i])
        return None


class CompositeEvaluator:
    """One composite, stepped per device after its components (rules are in dependency order)."""

    def __init__(self, rule: CompositeRule, ctx: EngineState, by_id: dict[str, AnyRule]) -> None:
        self.rule = rule
        self.ctx = ctx
        self.components = [by_id[c] for c in rule.components]
        self.ids = frozenset(rule.components)
        self.k = rule.k
        self.clear_below = rule.clear_below()
        self.state = ctx.state[rule.id]
        self.state.add("since", np.int64, -1)  # when the combination began to hold (for `for`)
        self.state.add("last_at", np.int64, 0)  # the composite's last event on the device
        self.n_pending = 0  # devices whose combination holds, waiting for `for` to pass

    def rebuild(self) -> None:
        """Derived counts (after a restore)."""
        n = self.ctx.n_dev
        st = self.state
        self.n_pending = int(np.count_nonzero((st["since"][:n] >= 0) & ~st["active"][:n]))

    def reset(self, d: int) -> None:
        """Forget device ``d``'s pending combination (its patch was superseded)."""
        if int(self.state["since"][d]) >= 0 and not self.state["active"][d]:
            self.n_pending -= 1
        self.state["since"][d] = -1

    def step(self, events: Sequence[AlertEvent], observed: Observed, out: list[AlertEvent]) -> None:
        """Replay the component transitions in ``events``; raise/clear into ``out``."""
        ctx = self.ctx
        mine: dict[int, list[AlertEvent]] = {}
        for e in events:
            if e.rule_id in self.ids and e.transition is not AlertTransition.ACKNOWLEDGED:
                d = ctx.devices.get(e.device_id)
                if d is not None:
                    mine.setdefault(d, []).append(e)
        devices = set(mine)
        if self.n_pending:
            st = self.state
            n = ctx.n_dev
            devices |= set(np.flatnonzero((st["since"][:n] >= 0) & ~st["active"][:n]).tolist())
        scope = ctx.scope[self.rule.id]
        for d in sorted(devices):
            if scope[d]:
                self._walk(d, sorted(mine.get(d, []), key=lambda e: e.at_us), observed, out)

    def _walk(
        self, d: int, evs: list[AlertEvent], observed: Observed, out: list[AlertEvent]
    ) -> None:
        ctx, st = self.ctx, self.state
        on = {c.id: active_on(ctx, c, d) for c in self.components}
        for e in reversed(evs):  # undo the batch: the state before its first transition
            on[e.rule_id] = e.transition is CLEARED
        active, since, last = bool(st["active"][d]), int(st["since"][d]), int(st["last_at"][d])
        pending_before = since >= 0 and not active
        for at, group in itertools.groupby(evs, key=lambda e: e.at_us):
            active, since, last = self._due(d, on, active, since, last, at, observed, out)
            for e in group:
                on[e.rule_id] = e.transition is RAISED
            count = sum(on.values())
            if active and count < self.clear_below:
                active, since, last = False, -1, self._emit(d, CLEARED, max(at, last), on, out)
            elif not active and count >= self.k:
                since = at if since < 0 else since
                if at - since >= self.rule.for_us:
                    active, since, last = True, -1, self._emit(d, RAISED, max(at, last), on, out)
            elif not active:
                since = -1
        active, since, last = self._due(d, on, active, since, last, FOREVER, observed, out)
        st["active"][d], st["since"][d], st["last_at"][d] = active, since, last
        self.n_pending += int(since >= 0 and not active) - int(pending_before)

    def _due(
        self,
        d: int,
        on: dict[str, bool],
        active: bool,
        since: int,
        last: int,
        before: int,
        observed: Observed,
        out: list[AlertEvent],
    ) -> tuple[bool, int, int]:
        """Raise a held combination at the first observation after ``for`` and before ``before``."""
        if active or since < 0 or sum(on.values()) < self.k:
            return active, since, last
        at = observed.first(d, since + self.rule.for_us, before)
        if at is None:
            return active, since, last
        return True, -1, self._emit(d, RAISED, max(at, last), on, out)

    def _emit(
        self,
        d: int,
        transition: AlertTransition,
        at: int,
        on: dict[str, bool],
        out: list[AlertEvent],
    ) -> int:
        ctx, rule = self.ctx, self.rule
        ctx.n_active[rule.id] += 1 if transition is RAISED else -1
        names = [c for c in rule.components if on[c]]
        out.append(composite_event(rule, ctx.devices.ids[d], transition, at, names))
        return at
