"""The reference evaluator: plain Python, one reading at a time, obviously correct and slow.

It implements exactly the semantics documented in docs/rules.md and is the oracle the
vectorized engine is tested against.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contract.alert import AlertEvent, AlertTransition
from contract.reading import Reading
from rules.context import EngineStats
from rules.evidence import composite_event, event_order, signal_event, silence_event, window_start
from rules.loader import normalize_rules
from rules.model import (
    SIGNAL_KINDS,
    AnyRule,
    CompositeRule,
    Condition,
    DeltaBaselineRule,
    DeltaReferenceRule,
    RateRule,
    RepeatingRule,
    SignalRule,
    SilenceRule,
    ThresholdRule,
    ZScoreRule,
)
from rules.policy import ReadingPolicy
from rules.registry import Registry, device_matches

RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
Key = tuple[str, str]  # (device, metric)


def passes(cond: Condition, x: float) -> bool:
    """Whether a signal value passes a condition; NaN never does."""
    op, a, b = cond.test
    if op == "above":
        return x > a
    if op == "below":
        return x < a
    if op == "at_least":
        return x >= a
    if op == "at_most":
        return x <= a
    if op == "outside":
        return x < a or x > b
    return a <= x <= b


@dataclass
class _Series:
    last_ts: int
    last_val: float
    ring: deque[tuple[int, float]]


@dataclass
class _RuleState:
    active: bool = False
    raise_since: int = -1
    clear_since: int = -1
    base_start: int = -1
    base_values: list[float] = field(default_factory=list)
    base_value: float = math.nan
    base_ready: bool = False


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
        self.series: dict[Key, _Series] = {}
        self.device_last: dict[str, int] = {}
        self.state: dict[tuple[str, str, str], _RuleState] = {}

    def process(self, readings: Sequence[Reading], now_us: int | None = None) -> list[AlertEvent]:
        """Evaluate one batch, reading by reading in (series, timestamp) order."""
        events: list[AlertEvent] = []
        at_batch_start = {k: (s.last_ts, s.last_val) for k, s in self.series.items()}
        bound = self.policy.bound(self.clock, now_us)
        inside = [r for r in readings if r.ts_us <= bound]
        self.stats.dropped_out_of_window += len(readings) - len(inside)
        ordered = sorted(inside, key=lambda r: (r.device_id, r.metric, r.ts_us))
        seen: set[Key] = set()
        dev_first: dict[str, int] = {}
        dev_last: dict[str, int] = {}
        for r in ordered:
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
            if key not in seen:
                seen.add(key)
                self._clear_silence(key, r.ts_us, last, events)
            if series is None:
                series = self.series[key] = _Series(0, math.nan, deque(maxlen=self.capacity))
            series.ring.append((r.ts_us, float(r.value)))
            series.last_ts, series.last_val = r.ts_us, float(r.value)
            self.clock = max(self.clock, r.ts_us)
            dev_first.setdefault(r.device_id, r.ts_us)
            dev_first[r.device_id] = min(dev_first[r.device_id], r.ts_us)
            dev_last[r.device_id] = max(dev_last.get(r.device_id, 0), r.ts_us)
            for rule in self.rules:
                if not isinstance(rule, SIGNAL_KINDS) or rule.metric != r.metric:
                    continue
                if not device_matches(rule.scope, self.registry.get(r.device_id)):
                    continue
                self._evaluate(
                    rule, r.device_id, series, float(r.value), r.ts_us, at_batch_start, events
                )
        for device, first in dev_first.items():
            for rule in self.rules:
                if isinstance(rule, SilenceRule) and rule.scope.metric is None:
                    st = self._st(rule.id, device, "")
                    if st.active:
                        st.active = False
                        events.append(
                            silence_event(
                                rule, device, CLEARED, first, self.device_last.get(device, 0)
                            )
                        )
        for device, last_ts in dev_last.items():
            self.device_last[device] = max(self.device_last.get(device, 0), last_ts)
        self._composites(dev_last, events)
        events.sort(key=event_order)
        return events

    def tick(self, now_us: int) -> list[AlertEvent]:
        """Raise silence alerts due at ``now_us``, then step composites on every device."""
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
                st = self._st(rule.id, device, metric)
                if not st.active and last > 0 and now_us - last >= rule.after:
                    st.active = True
                    events.append(silence_event(rule, device, RAISED, now_us, last))
        self._composites({d: now_us for d in self.device_last}, events)
        events.sort(key=event_order)
        return events

    def _st(self, rule_id: str, device: str, metric: str) -> _RuleState:
        return self.state.setdefault((rule_id, device, metric), _RuleState())

    def _clear_silence(self, key: Key, ts: int, last: int, events: list[AlertEvent]) -> None:
        for rule in self.rules:
            if isinstance(rule, SilenceRule) and rule.scope.metric == key[1]:
                st = self._st(rule.id, *key)
                if st.active:
                    st.active = False
                    events.append(silence_event(rule, key[0], CLEARED, ts, last))

    def _evaluate(
        self,
        rule: SignalRule,
        device: str,
        series: _Series,
        value: float,
        t: int,
        at_batch_start: dict[Key, tuple[int, float]],
        events: list[AlertEvent],
    ) -> None:
        st = self._st(rule.id, device, rule.metric)
        self.stats.evaluations += 1
        extra: dict[str, Any] = {}
        signal = self._signal(rule, device, series, value, t, st, at_batch_start, extra)
        r_on = passes(rule.raise_, signal)
        c_on = passes(rule.clear, signal)
        st.raise_since = (st.raise_since if st.raise_since >= 0 else t) if r_on else -1
        st.clear_since = (st.clear_since if st.clear_since >= 0 else t) if c_on else -1
        r_held = r_on and t - st.raise_since >= rule.raise_.for_us
        c_held = c_on and t - st.clear_since >= rule.clear.for_us
        now = (not c_held) if st.active else r_held
        if now == st.active:
            return
        st.active = now
        since = st.raise_since if now else st.clear_since
        start = window_start(rule, t, since)
        window = [(ts, v) for ts, v in series.ring if start <= ts <= t]
        events.append(
            signal_event(rule, device, RAISED if now else CLEARED, t, signal, window, extra)
        )

    def _signal(
        self,
        rule: SignalRule,
        device: str,
        series: _Series,
        value: float,
        t: int,
        st: _RuleState,
        at_batch_start: dict[Key, tuple[int, float]],
        extra: dict[str, Any],
    ) -> float:
        ring = list(series.ring)
        if isinstance(rule, ThresholdRule):
            return value
        if isinstance(rule, RepeatingRule):
            return float(sum(1 for ts, v in ring if ts > t - rule.within and passes(rule.match, v)))
        if isinstance(rule, RateRule):
            inside = [(ts, v) for ts, v in ring if ts > t - rule.window]
            t0, v0 = inside[0]
            if t == t0 or t - t0 < rule.min_span:
                return math.nan
            return (value - v0) / ((t - t0) / 3.6e9)
        if isinstance(rule, ZScoreRule):
            prior = [v for ts, v in ring if t - rule.window < ts < t]
            if len(prior) < rule.min_count:
                return math.nan
            mean = sum(prior) / len(prior)
            var = sum(v * v for v in prior) / len(prior) - mean * mean
            std = max(math.sqrt(max(var, 0.0)), rule.min_std)
            return (value - mean) / std if std > 0 else math.nan
        if isinstance(rule, DeltaBaselineRule):
            if st.base_start < 0:
                st.base_start = t
            if not st.base_ready:
                if t < st.base_start + rule.baseline:
                    if len(st.base_values) < rule.baseline_samples:
                        st.base_values.append(value)
                    return math.nan
                st.base_value = statistics.median(st.base_values)
                st.base_ready = True
            extra["baseline"] = st.base_value
            return value - st.base_value
        assert isinstance(rule, DeltaReferenceRule)
        info = self.registry.get(device)
        ref = rule.references.get(device) or (info.reference if info else None)
        if not ref or (ref, rule.metric) not in at_batch_start:
            return math.nan
        ref_ts, ref_val = at_batch_start[(ref, rule.metric)]
        if ref_ts <= 0 or abs(t - ref_ts) > rule.max_age:
            return math.nan
        extra["reference_device"] = ref
        extra["reference_value"] = ref_val
        return value - ref_val

    def _device_active(self, rule: AnyRule, device: str) -> bool:
        if isinstance(rule, CompositeRule) or (
            isinstance(rule, SilenceRule) and rule.scope.metric is None
        ):
            return self._st(rule.id, device, "").active
        metric = rule.scope.metric or ""
        state = self.state.get((rule.id, device, metric))
        return bool(state and state.active)

    def _composites(self, at: dict[str, int], events: list[AlertEvent]) -> None:
        by_id = {r.id: r for r in self.rules}
        for rule in self.rules:
            if not isinstance(rule, CompositeRule):
                continue
            for device, at_us in at.items():
                if not device_matches(rule.scope, self.registry.get(device)):
                    continue
                parts = [self._device_active(by_id[c], device) for c in rule.components]
                on = all(parts) if rule.all_of is not None else any(parts)
                off = not all(parts) if rule.clear_rule == "not_all_active" else not any(parts)
                st = self._st(rule.id, device, "")
                if not (off if st.active else on):
                    continue
                st.active = not st.active
                names = [c for c, p in zip(rule.components, parts, strict=True) if p]
                events.append(
                    composite_event(rule, device, RAISED if st.active else CLEARED, at_us, names)
                )
