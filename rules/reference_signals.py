"""The reference's per-kind signals, one reading at a time (see ``rules.reference``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rules.model import (
    Condition,
    DeltaBaselineRule,
    DeltaReferenceRule,
    ProportionRule,
    RateRule,
    RepeatingRule,
    RollingRule,
    SignalRule,
    ThresholdRule,
    TrendRule,
    ZScoreRule,
)
from rules.reference_windows import History, Learnt, statistic, total

if TYPE_CHECKING:
    from rules.reference import ReferenceEngine

NAN = math.nan
Key = tuple[str, str]
Owner = tuple[str, str, str]  # ("s", device, metric) or ("w", wound, metric)
Extra = Callable[[], dict[str, Any]]


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
class Series:
    """One (device, metric): its last accepted reading and a ring of recent ones."""

    last_ts: int
    last_val: float
    ring: deque[tuple[int, float]]


@dataclass
class RuleState:
    """One (rule, device, metric): hysteresis, confirmation, held reference, silence."""

    active: bool = False
    raise_since: int = -1
    clear_since: int = -1
    pending: int = -1
    held: float = NAN
    reference: float = NAN  # a trend's reference at its latest reading
    raised_at: int = 0


@dataclass(frozen=True)
class Batch:
    """What a batch sees of other series: their last readings at its start, and which exist."""

    at_start: dict[Key, tuple[int, float]]
    known: set[Key]


def _none() -> dict[str, Any]:
    return {}


class Signals:
    """Per-kind signals over plain lists of readings."""

    def __init__(self, engine: ReferenceEngine) -> None:
        self.engine = engine
        self.hist: dict[tuple[str, Owner], History] = {}
        self.learnt: dict[tuple[str, Owner], Learnt] = {}

    def _owner(self, rule: SignalRule, device: str, history: str = "series") -> Owner:
        wound = self.engine.wound_of(device) if history == "wound" else None
        return ("w", wound, rule.metric) if wound else ("s", device, rule.metric)

    def _history(self, rule: SignalRule, owner: Owner, res: int, slots: int) -> History:
        return self.hist.setdefault((rule.id, owner), History(res, slots + 1))

    def _learner(self, rule: SignalRule, owner: Owner, span: int, res: int, cov: float) -> Learnt:
        return self.learnt.setdefault((rule.id, owner), Learnt(span, res, cov))

    def _excluded(self, device: str, t: int, exclude: int) -> bool:
        return t < self.engine.first.get(device, 0) + exclude

    def signal(
        self,
        rule: SignalRule,
        device: str,
        series: Series,
        value: float,
        t: int,
        st: RuleState,
        batch: Batch,
    ) -> tuple[float, bool, Extra]:
        """(signal, clear forced, evidence extras) of one reading."""
        if isinstance(rule, ThresholdRule):
            return value, False, _none
        if isinstance(rule, RepeatingRule | ProportionRule | ZScoreRule):
            return self._counting(rule, device, value, t), False, _none
        if isinstance(rule, RateRule):
            inside = [(ts, v) for ts, v in series.ring if ts > t - rule.window]
            t0, v0 = inside[0]
            if t == t0 or t - t0 < rule.min_span:
                return NAN, False, _none
            return (value - v0) / ((t - t0) / 3.6e9), False, _none
        if isinstance(rule, RollingRule):
            return self._rolling(rule, device, value, t)
        if isinstance(rule, TrendRule):
            return self._trend(rule, device, value, t, st)
        if isinstance(rule, DeltaBaselineRule):
            return self._baseline(rule, device, value, t)
        return self._reference(rule, device, value, t, batch)

    def _counting(
        self, rule: RepeatingRule | ProportionRule | ZScoreRule, device: str, v: float, t: int
    ) -> float:
        span = rule.within if isinstance(rule, RepeatingRule) else rule.window
        n = span // rule.res_us
        h = self._history(rule, self._owner(rule, device), rule.res_us, n - 1)
        h.roll(t)
        assert h.open_key is not None
        done = h.completed(n - 1, n - 1)
        if isinstance(rule, ZScoreRule):
            before = h.bucket(h.open_key)
            h.readings.append((t, v))
            count = total(done, before, "n")
            if count < rule.min_count:
                return NAN
            mean = total(done, before, "sum") / count
            var = total(done, before, "sumsq") / count - mean * mean
            std = max(math.sqrt(max(var, 0.0)), rule.min_std)
            return (v - mean) / std if std > 0 else NAN
        h.readings.append((t, v))
        now = h.bucket(h.open_key)
        match = total([_matches(rule.match, b) for b in done], _matches(rule.match, now), "sum")
        if isinstance(rule, RepeatingRule):
            return match
        count = total(done, now, "n")
        return match / count if count >= rule.min_count else NAN

    def _rolling(
        self, rule: RollingRule, device: str, v: float, t: int
    ) -> tuple[float, bool, Extra]:
        n = rule.window // rule.res_us
        h = self._history(rule, self._owner(rule, device), rule.res_us, n)
        h.feed(t, v)
        stat = statistic(h.completed(n, n), rule.statistic, rule.min_coverage)
        return stat, False, lambda: {"statistic": rule.statistic, "window_us": rule.window}

    def _trend(
        self, rule: TrendRule, device: str, v: float, t: int, st: RuleState
    ) -> tuple[float, bool, Extra]:
        res = rule.res_us
        n_r, n_p = rule.window // res, rule.prior // res
        owner = self._owner(rule, device, rule.history)
        h = self._history(rule, owner, res, n_r + n_p)
        out = self._excluded(device, t, rule.exclude)
        learner = None
        if rule.against == "baseline":
            learner = self._learner(rule, owner, rule.baseline, res, rule.min_coverage)
        if not out and self.engine.is_current(device):
            h.feed(t, v)
            if learner is not None:
                learner.feed(t, v)
        has = h.open_key is not None
        recent = v
        if n_r:
            recent = NAN
            if has:
                recent = statistic(h.completed(n_r, n_r), rule.statistic, rule.min_coverage)
        if learner is not None:
            ref = learner.value
        else:
            ref = NAN
            if has:
                ref = statistic(h.completed(n_r + n_p, n_p), rule.statistic, rule.min_coverage)
        if rule.hold_reference and not math.isnan(st.held):
            ref = st.held
        st.reference = ref
        scale = 1.0
        if rule.per is not None:
            scale = (n_r + n_p) * res / 2 / rule.per
        signal = NAN if out else (recent - ref) / scale

        def extra() -> dict[str, Any]:
            info: dict[str, Any] = {"reference": ref, "against": rule.against}
            if n_r:
                info["recent"] = recent
            return info

        return signal, False, extra

    def transitioned(self, rule: SignalRule, device: str, st: RuleState, now: bool) -> None:
        """Hold (or release) a trend's reference at its raise (clear)."""
        if isinstance(rule, TrendRule) and rule.hold_reference:
            st.held = st.reference if now else NAN

    def _baseline(
        self, rule: DeltaBaselineRule, device: str, v: float, t: int
    ) -> tuple[float, bool, Extra]:
        owner = self._owner(rule, device, rule.history)
        learner = self._learner(rule, owner, rule.baseline, rule.res_us, rule.min_coverage)
        out = self._excluded(device, t, rule.exclude)
        if not out and self.engine.is_current(device):
            learner.feed(t, v)
        base = learner.value
        return (NAN if out else v - base), False, lambda: {"baseline": base}

    def _reference(
        self, rule: DeltaReferenceRule, device: str, v: float, t: int, batch: Batch
    ) -> tuple[float, bool, Extra]:
        ref = self._reference_device(rule, device, batch)
        key = (ref, rule.metric) if ref else None
        ref_ts, ref_val = batch.at_start.get(key, (0, NAN)) if key else (0, NAN)
        ok = key is not None and ref_ts > 0 and abs(t - ref_ts) <= rule.max_age
        delta = v - ref_val if ok else NAN
        offset = rule.offset
        learner = None
        if offset is not None:
            owner = self._owner(rule, device, "wound")
            learner = self._learner(rule, owner, offset.learn, offset.res_us, offset.min_coverage)
            start = max(self.engine.first.get(device, 0), self.engine.first.get(ref or "", 0))
            inside = ok and t >= start + offset.exclude
            if inside and self.engine.is_current(device):
                learner.feed(t, delta)
            delta = delta - learner.value if inside else NAN

        def extra() -> dict[str, Any]:
            if key is None:
                return {"reference_missing": True}
            info: dict[str, Any] = {"reference_device": ref, "reference_value": ref_val}
            if not (ref_ts > 0 and abs(t - ref_ts) <= rule.max_age):
                info["reference_stale"] = True
                info["reference_last_us"] = ref_ts
            if learner is not None:
                info["offset"] = learner.value
            return info

        return delta, not ok, extra

    def _reference_device(self, rule: DeltaReferenceRule, device: str, batch: Batch) -> str | None:
        """The current patch of the reference wound, else the fixed reference (if it exists)."""
        info = self.engine.registry.get(device)
        if info is not None and info.wound_key is not None and info.reference_wound is not None:
            current = self.engine.current.get(f"{info.patient}\x1f{info.reference_wound}")
            if current is not None and (current, rule.metric) in batch.known:
                return current
        fixed = rule.references.get(device) or (info.reference if info else None)
        if fixed and (fixed, rule.metric) in batch.known:
            return fixed
        return None


def _matches(cond: Condition, values: list[float]) -> list[float]:
    return [1.0 if passes(cond, v) else 0.0 for v in values]
