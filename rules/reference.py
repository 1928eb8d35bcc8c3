"""The reference evaluator: plain Python, one reading at a time, obviously correct and slow.

It implements exactly the semantics documented in docs/rules.md and is the oracle the
vectorized engine is tested against. Per-kind signals are in ``rules.reference_signals``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contract.alert import AlertEvent, AlertTransition
from contract.reading import Reading
from rules.context import EngineStats
from rules.evidence import (
    composite_event,
    event_order,
    signal_event,
    silence_event,
    superseded_event,
    window_start,
)
from rules.loader import normalize_rules
from rules.model import SIGNAL_KINDS, AnyRule, CompositeRule, SignalRule, SilenceRule
from rules.policy import ReadingPolicy
from rules.reference_signals import Batch, RuleState, Series, Signals, passes
from rules.registry import Registry, device_matches

RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
Key = tuple[str, str]  # (device, metric)
FOREVER = 2**63 - 1


@dataclass
class _Composite:
    active: bool = False
    since: int = -1
    last: int = 0
    on: dict[str, bool] = field(default_factory=dict)  # components, as their events said


class ReferenceEngine:
    """Same API and results as RuleEngine, computed reading by reading."""

    def __init__(
        self,
        rules: Sequence[AnyRule],
        registry: Registry | None = None,
        *,
        window_capacity: int = 32,
        policy: ReadingPolicy | None = None,
    ) -> None:
        self.rules = normalize_rules(rules)
        self.registry: Registry = registry or {}
        self.capacity = window_capacity
        self.policy = policy or ReadingPolicy()
        self.stats = EngineStats()
        self.clock = 0  # newest accepted reading of any series
        self.series: dict[Key, Series] = {}
        self.device_last: dict[str, int] = {}
        self.first: dict[str, int] = {}  # device -> first accepted reading
        self.retired: dict[str, int] = {}  # device -> when a newer patch superseded it
        self.current: dict[str, str] = {}  # wound -> its newest device
        self.members: dict[str, list[str]] = {}  # wound -> its devices
        self.state: dict[tuple[str, str, str], RuleState] = {}
        self.composites: dict[tuple[str, str], _Composite] = {}
        self.signals = Signals(self)

    # ---- batches ----------------------------------------------------------------------------

    def process(self, readings: Sequence[Reading], now_us: int | None = None) -> list[AlertEvent]:
        """Evaluate one batch, reading by reading in (series, timestamp) order."""
        events: list[AlertEvent] = []
        bound = self.policy.bound(self.clock, now_us)
        inside = [r for r in readings if r.ts_us <= bound]
        self.stats.dropped_out_of_window += len(readings) - len(inside)
        valid = [r for r in inside if math.isfinite(r.value)]
        self.stats.dropped_invalid += len(inside) - len(valid)
        self._admit(valid, events)
        kept = [r for r in valid if r.ts_us < self.retired.get(r.device_id, FOREVER)]
        self.stats.dropped_retired += len(valid) - len(kept)
        batch = Batch(
            {k: (s.last_ts, s.last_val) for k, s in self.series.items()},
            {(r.device_id, r.metric) for r in valid} | set(self.series),
        )
        seen: set[Key] = set()
        accepted: dict[str, list[int]] = {}
        dev_first: dict[str, int] = {}
        dev_last: dict[str, int] = {}
        for r in sorted(kept, key=lambda r: (r.device_id, r.metric, r.ts_us)):
            key = (r.device_id, r.metric)
            series = self.series.get(key)
            last = series.last_ts if series else 0
            if r.ts_us < last:
                self.stats.dropped_late += 1
                continue
            if r.ts_us == last:
                self.stats.dropped_duplicate += 1
                continue
            self.stats.accepted += 1
            accepted.setdefault(r.device_id, []).append(r.ts_us)
            if key not in seen:
                seen.add(key)
                self._clear_silence(key, r.ts_us, last, events)
            if series is None:
                series = self.series[key] = Series(0, math.nan, deque(maxlen=self.capacity))
            series.ring.append((r.ts_us, float(r.value)))
            series.last_ts, series.last_val = r.ts_us, float(r.value)
            self.clock = max(self.clock, r.ts_us)
            dev_first[r.device_id] = min(dev_first.get(r.device_id, r.ts_us), r.ts_us)
            dev_last[r.device_id] = max(dev_last.get(r.device_id, 0), r.ts_us)
            for rule in self.rules:
                if not isinstance(rule, SIGNAL_KINDS) or rule.metric != r.metric:
                    continue
                if not device_matches(rule.scope, self.registry.get(r.device_id)):
                    continue
                self._evaluate(rule, r.device_id, series, float(r.value), r.ts_us, batch, events)
        self._clear_device_silence(dev_first, events)
        for device, last_ts in dev_last.items():
            self.device_last[device] = max(self.device_last.get(device, 0), last_ts)
        self._composites(events, lambda d: sorted(accepted.get(d, [])), events)
        events.sort(key=event_order)
        return events

    def tick(self, now_us: int) -> list[AlertEvent]:
        """Raise silence alerts due at ``now_us``, then step composites."""
        events: list[AlertEvent] = []
        for rule in self.rules:
            if not isinstance(rule, SilenceRule):
                continue
            if rule.scope.metric is None:
                items = [((d, ""), last) for d, last in self.device_last.items()]
            else:
                items = [
                    (k, s.last_ts) for k, s in self.series.items() if k[1] == rule.scope.metric
                ]
            for (device, metric), last in items:
                if not device_matches(rule.scope, self.registry.get(device)):
                    continue
                if device in self.retired:
                    continue
                st = self._st(rule.id, device, metric)
                if not st.active and last > 0 and now_us - last >= rule.after:
                    st.active, st.raised_at = True, now_us
                    events.append(silence_event(rule, device, RAISED, now_us, last))
        self._composites(events, lambda d: [now_us], events)
        events.sort(key=event_order)
        return events

    def _st(self, rule_id: str, device: str, metric: str) -> RuleState:
        return self.state.setdefault((rule_id, device, metric), RuleState())

    # ---- wounds -----------------------------------------------------------------------------

    def wound_of(self, device: str) -> str | None:
        """The (patient, wound) key of a device, from the registry."""
        info = self.registry.get(device)
        return info.wound_key if info else None

    def is_current(self, device: str) -> bool:
        """Whether a device is its wound's newest patch (or has no wound)."""
        wound = self.wound_of(device)
        return wound is None or self.current.get(wound, device) == device

    def _admit(self, readings: list[Reading], events: list[AlertEvent]) -> None:
        """New devices' first readings; patches they supersede are retired."""
        fresh: dict[str, int] = {}
        for r in readings:
            if r.device_id not in self.first:
                fresh[r.device_id] = min(fresh.get(r.device_id, r.ts_us), r.ts_us)
        self.first.update(fresh)
        for wound in sorted({w for d in fresh if (w := self.wound_of(d)) is not None}):
            members = self.members.setdefault(wound, [])
            members += [d for d in sorted(fresh) if self.wound_of(d) == wound]
            ordered = sorted(members, key=lambda d: (self.first[d], d))
            for a, b in itertools.pairwise(ordered):
                at = self.first[b]
                if at < self.retired.get(a, FOREVER):
                    if a not in self.retired:
                        self._retire(a, at, b, events)
                    self.retired[a] = at
            self.current[wound] = ordered[-1]

    def _retire(self, device: str, at_us: int, by: str, events: list[AlertEvent]) -> None:
        lasts = [s.last_ts for (d, _), s in self.series.items() if d == device]
        at = max([at_us, *lasts])
        for rule in self.rules:
            if isinstance(rule, CompositeRule):
                comp = self.composites.setdefault((rule.id, device), _Composite())
                comp.since = -1
                if comp.active:
                    comp.active, comp.last = False, max(at, comp.last)
                    events.append(superseded_event(rule, device, comp.last, by, None))
                continue
            metric = rule.scope.metric or "" if isinstance(rule, SilenceRule) else rule.scope.metric
            assert metric is not None
            st = self.state.get((rule.id, device, metric))
            if st is None:
                continue
            if st.active:
                when = max(at, st.raised_at) if isinstance(rule, SilenceRule) else at
                events.append(superseded_event(rule, device, when, by, rule.scope.metric))
            st.active, st.raise_since, st.clear_since, st.pending = False, -1, -1, -1
            st.held = math.nan

    # ---- silence ----------------------------------------------------------------------------

    def _clear_silence(self, key: Key, ts: int, last: int, events: list[AlertEvent]) -> None:
        for rule in self.rules:
            if isinstance(rule, SilenceRule) and rule.scope.metric == key[1]:
                st = self._st(rule.id, *key)
                if st.active:
                    st.active = False
                    events.append(silence_event(rule, key[0], CLEARED, max(ts, st.raised_at), last))

    def _clear_device_silence(self, dev_first: dict[str, int], events: list[AlertEvent]) -> None:
        for device, first in dev_first.items():
            for rule in self.rules:
                if isinstance(rule, SilenceRule) and rule.scope.metric is None:
                    st = self._st(rule.id, device, "")
                    if st.active:
                        st.active = False
                        last = self.device_last.get(device, 0)
                        at = max(first, st.raised_at)
                        events.append(silence_event(rule, device, CLEARED, at, last))

    # ---- value rules ------------------------------------------------------------------------

    def _evaluate(
        self,
        rule: SignalRule,
        device: str,
        series: Series,
        value: float,
        t: int,
        batch: Batch,
        events: list[AlertEvent],
    ) -> None:
        st = self._st(rule.id, device, rule.metric)
        self.stats.evaluations += 1
        signal, forced, extra = self.signals.signal(rule, device, series, value, t, st, batch)
        r_on = passes(rule.raise_, signal)
        c_on = passes(rule.clear, signal) or forced
        st.raise_since = (st.raise_since if st.raise_since >= 0 else t) if r_on else -1
        st.clear_since = (st.clear_since if st.clear_since >= 0 else t) if c_on else -1
        r_held = r_on and t - st.raise_since >= rule.raise_.for_us
        c_held = c_on and t - st.clear_since >= rule.clear.for_us
        started = st.raise_since
        if rule.confirm and not st.active:
            pend = -1 if c_held else st.pending
            if r_held and pend < 0:
                pend = t
            fire = r_held and pend >= 0 and t - pend >= rule.confirm
            started = pend if fire else started
            st.pending = -1 if fire else pend
            r_held = fire
        elif rule.confirm:
            st.pending = -1
        now = (not c_held) if st.active else r_held
        if now == st.active:
            return
        st.active = now
        since = started if now else st.clear_since
        start = window_start(rule, t, since)
        window = [(ts, v) for ts, v in series.ring if start <= ts <= t]
        events.append(
            signal_event(rule, device, RAISED if now else CLEARED, t, signal, window, extra())
        )
        self.signals.transitioned(rule, device, st, now)

    # ---- composites -------------------------------------------------------------------------

    def _composites(self, events: list[AlertEvent], times: Any, out: list[AlertEvent]) -> None:
        for rule in self.rules:
            if not isinstance(rule, CompositeRule):
                continue
            mine: dict[str, list[AlertEvent]] = {}
            for e in events:
                if e.rule_id in rule.components and e.transition is not (
                    AlertTransition.ACKNOWLEDGED
                ):
                    mine.setdefault(e.device_id, []).append(e)
            pending = {
                d
                for (rid, d), c in self.composites.items()
                if rid == rule.id and c.since >= 0 and not c.active
            }
            for device in sorted(set(mine) | pending):
                if device_matches(rule.scope, self.registry.get(device)):
                    evs = sorted(mine.get(device, []), key=lambda e: e.at_us)
                    self._walk(rule, device, evs, times(device), out)

    def _walk(
        self,
        rule: CompositeRule,
        device: str,
        evs: list[AlertEvent],
        times: list[int],
        out: list[AlertEvent],
    ) -> None:
        c = self.composites.setdefault((rule.id, device), _Composite())
        for name in rule.components:
            c.on.setdefault(name, False)
        k, below = rule.k, rule.clear_below()

        def due(before: int) -> None:
            if c.active or c.since < 0 or sum(c.on.values()) < k:
                return
            at = next((x for x in times if c.since + rule.for_us <= x < before), None)
            if at is not None:
                self._emit(rule, device, c, RAISED, at, out)

        for at, group in itertools.groupby(evs, key=lambda e: e.at_us):
            due(at)
            for e in group:
                c.on[e.rule_id] = e.transition is RAISED
            count = sum(c.on.values())
            if c.active and count < below:
                self._emit(rule, device, c, CLEARED, at, out)
            elif not c.active and count >= k:
                c.since = at if c.since < 0 else c.since
                if at - c.since >= rule.for_us:
                    self._emit(rule, device, c, RAISED, at, out)
            elif not c.active:
                c.since = -1
        due(FOREVER)

    def _emit(
        self,
        rule: CompositeRule,
        device: str,
        c: _Composite,
        transition: AlertTransition,
        at: int,
        out: list[AlertEvent],
    ) -> None:
        c.active, c.since, c.last = transition is RAISED, -1, max(at, c.last)
        names = [name for name in rule.components if c.on[name]]
        out.append(composite_event(rule, device, transition, c.last, names))
