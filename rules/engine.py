"""The vectorized rule engine: all series and all rules per batch with numpy; pure, no I/O.

State is struct-of-arrays. Series (device, metric) get dense indices; per series the engine keeps
the last accepted timestamp/value and a ring buffer of the last ``window_capacity`` readings.
Per (rule, series) it keeps the active flag, the raise/clear sustain starts and, for baseline
rules, the baseline buffer and median. A batch is sorted by (series, ts), filtered by the
late/duplicate policy and then evaluated in *rounds*: round k holds the k-th accepted reading of
every series in the batch, so each round is one vectorized step over all series and the Python
loop runs over rounds and rules, never over readings.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contract.alert import AlertEvent, AlertTransition
from contract.reading import Reading
from rules.columns import METRIC_CODES, METRIC_NAMES, Columns, DeviceTable, columns_from_readings
from rules.evidence import composite_event, event_order, signal_event, silence_event, window_start
from rules.loader import normalize_rules
from rules.model import (
    SIGNAL_KINDS,
    AnyRule,
    CompositeRule,
    DeltaBaselineRule,
    DeltaReferenceRule,
    RateRule,
    RepeatingRule,
    SignalRule,
    SilenceRule,
    ZScoreRule,
)
from rules.registry import DeviceInfo, Registry, device_matches
from rules.signals import EMPTY_TS, count_in_window, rate_per_hour, row_median, test, zscore
from rules.state import Arrays

SNAPSHOT_VERSION = 1
_M = len(METRIC_NAMES)
RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Idx = NDArray[np.intp]


@dataclass
class EngineStats:
    """Counters for the reading policy and the work done."""

    accepted: int = 0
    dropped_late: int = 0
    dropped_duplicate: int = 0
    evaluations: int = 0  # reading-rule evaluations of value-driven rules


class RuleEngine:
    """Evaluate rules over columnar batches of readings; returns raised/cleared AlertEvents."""

    def __init__(
        self, rules: Sequence[AnyRule], registry: Registry | None = None, *,
        window_capacity: int = 32,
    ) -> None:
        self.rules = normalize_rules(rules)
        self.registry: Registry = registry or {}
        self.window_capacity = window_capacity
        self.devices = DeviceTable()
        self.stats = EngineStats()
        self._signal = [r for r in self.rules if isinstance(r, SIGNAL_KINDS)]
        self._silence = [r for r in self.rules if isinstance(r, SilenceRule)]
        self._composite = [r for r in self.rules if isinstance(r, CompositeRule)]
        for rule in self._signal:
            if isinstance(rule, RepeatingRule) and rule.raise_.test[1] > window_capacity:
                raise ValueError(f"rule {rule.id!r}: count above window capacity "
                                 f"{window_capacity}")
        self._by_metric: list[list[SignalRule]] = [[] for _ in range(_M)]
        for rule in self._signal:
            self._by_metric[METRIC_CODES[rule.metric]].append(rule)
        self._n_dev = 0
        self._n_series = 0
        self._dev = Arrays()
        self._dev.add("last_ts", np.int64, 0)
        self._table = Arrays()  # (device, metric code) -> series; rebuilt on restore
        self._table.add("series", np.intp, -1, width=_M)
        self._scope = Arrays()  # derived from the registry: never snapshotted
        self._filtered = {r.id for r in self.rules if _has_filter(r)}
        for any_rule in self.rules:
            self._scope.add(any_rule.id, np.bool_, False)
        self._series = Arrays()
        self._series.add("dev", np.intp, 0)
        self._series.add("metric", np.int8, 0)
        self._series.add("last_ts", np.int64, 0)
        self._series.add("last_val", np.float64, np.nan)
        self._series.add("ring_ts", np.int64, EMPTY_TS, width=window_capacity)
        self._series.add("ring_val", np.float64, 0.0, width=window_capacity)
        self._series.add("ring_head", np.intp, 0)
        self._state: dict[str, Arrays] = {r.id: self._new_state(r) for r in self.rules}
        self._ref_pending: dict[str, dict[int, tuple[str, int]]] = {
            r.id: {} for r in self._signal if isinstance(r, DeltaReferenceRule)}
        self._ref_val: F64 = np.empty(0)
        self._ref_ts: I64 = np.empty(0, dtype=np.int64)

    # ---- public API -------------------------------------------------------------------------

    def columns(self, readings: Sequence[Reading]) -> Columns:
        """Convert readings to columns against this engine's device table."""
        return columns_from_readings(readings, self.devices)

    def process_readings(self, readings: Sequence[Reading]) -> list[AlertEvent]:
        """Convenience: ``process(columns(readings))``."""
        return self.process(self.columns(readings))

    def process(self, cols: Columns) -> list[AlertEvent]:
        """Evaluate one batch; events come sorted by (at_us, device, rule)."""
        if len(cols) == 0:
            return []
        self._sync_devices()
        series = self._series_index(cols.device, cols.metric)
        order = _series_time_order(series, cols.ts_us, self._n_series)
        s_sorted = series[order]
        t_sorted = cols.ts_us[order]
        last = self._series["last_ts"][s_sorted]
        late = t_sorted < last
        repeat = np.zeros(len(order), dtype=np.bool_)
        repeat[1:] = (s_sorted[1:] == s_sorted[:-1]) & (t_sorted[1:] == t_sorted[:-1])
        dup = ~late & ((t_sorted == last) | repeat)
        keep = ~(late | dup)
        self.stats.dropped_late += int(np.count_nonzero(late))
        self.stats.dropped_duplicate += int(np.count_nonzero(dup))
        s = s_sorted[keep]
        t = t_sorted[keep]
        v = cols.value[order[keep]].astype(np.float64, copy=False)
        self.stats.accepted += len(s)
        if len(s) == 0:
            return []
        if self._ref_pending:
            n = self._n_series
            self._ref_val = self._series["last_val"][:n].copy()
            self._ref_ts = self._series["last_ts"][:n].copy()
        first = np.ones(len(s), dtype=np.bool_)
        first[1:] = s[1:] != s[:-1]
        events: list[AlertEvent] = []
        self._clear_series_silence(s[first], t[first], events)
        if first.all():
            self._round(s, t, v, events)
        else:
            positions = np.arange(len(s))
            rank = positions - np.maximum.accumulate(np.where(first, positions, 0))
            by_rank = np.argsort(rank, kind="stable")
            bounds = np.concatenate(([0], np.cumsum(np.bincount(rank))))
            for lo, hi in itertools.pairwise(bounds.tolist()):
                rows = by_rank[lo:hi]
                self._round(s[rows], t[rows], v[rows], events)
        dev = self._series["dev"][s]
        dev_first = np.full(self._n_dev, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(dev_first, dev, t)
        dev_last = np.zeros(self._n_dev, dtype=np.int64)
        np.maximum.at(dev_last, dev, t)
        self._clear_device_silence(dev_first, events)
        last_ts = self._dev["last_ts"][: self._n_dev]
        np.maximum(last_ts, dev_last, out=last_ts)
        self._composites(dev_last, events)
        events.sort(key=event_order)
        return events

    def tick(self, now_us: int) -> list[AlertEvent]:
        """Evaluate time-driven rules (silence) at ``now_us``, then composites."""
        self._sync_devices()
        events: list[AlertEvent] = []
        for rule in self._silence:
            active = self._state[rule.id]["active"]
            if rule.scope.metric is None:
                n = self._n_dev
                last = self._dev["last_ts"][:n]
                scope = self._scope[rule.id][:n]
                ids = np.arange(n)
            else:
                n = self._n_series
                last = self._series["last_ts"][:n]
                dev = self._series["dev"][:n]
                scope = (self._series["metric"][:n] == METRIC_CODES[rule.scope.metric]) & (
                    self._scope[rule.id][dev])
                ids = dev
            fire = np.flatnonzero(scope & ~active[:n] & (last > 0) & (now_us - last >= rule.after))
            active[fire] = True
            for i in fire.tolist():
                device_id = self.devices.ids[int(ids[i])]
                events.append(silence_event(rule, device_id, RAISED, now_us, int(last[i])))
        self._composites(np.full(self._n_dev, now_us, dtype=np.int64), events)
        events.sort(key=event_order)
        return events

    def active(self, rule_id: str) -> list[str]:
        """Devices on which ``rule_id`` is currently active."""
        activity = self._device_active(rule_id)
        return [self.devices.ids[i] for i in np.flatnonzero(activity).tolist()]

    def snapshot(self) -> bytes:
        """All evaluation state as an ``np.savez`` blob."""
        arrays: dict[str, NDArray[Any]] = {
            "meta": np.array([SNAPSHOT_VERSION, self.window_capacity, self._n_dev,
                              self._n_series], dtype=np.int64),
            "stats": np.array(list(asdict(self.stats).values()), dtype=np.int64),
            "device_ids": np.array(self.devices.ids[: self._n_dev], dtype=np.str_),
            "metric_names": np.array(METRIC_NAMES, dtype=np.str_),
        }
        arrays.update(self._dev.dump("dev:", self._n_dev))
        arrays.update(self._series.dump("series:", self._n_series))
        for rule in self.rules:
            size = self._n_dev if _device_level(rule) else self._n_series
            arrays[f"rule:{rule.id}:fingerprint"] = np.array(rule.model_dump_json())
            arrays.update(self._state[rule.id].dump(f"rule:{rule.id}:", size))
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        return buf.getvalue()

    @classmethod
    def restore(
        cls, rules: Sequence[AnyRule], registry: Registry | None, blob: bytes
    ) -> RuleEngine:
        """An engine continuing from ``snapshot()``; rules changed since start afresh."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            version, capacity, n_dev, n_series = (int(x) for x in data["meta"])
            if version != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {version} is not {SNAPSHOT_VERSION}")
            engine = cls(rules, registry, window_capacity=capacity)
            engine.stats = EngineStats(*(int(x) for x in data["stats"]))
            for device_id in data["device_ids"].tolist():
                engine.devices.intern(str(device_id))
            engine._sync_devices()
            engine._dev.load("dev:", data, n_dev)
            engine._series.load("series:", data, n_series)
            engine._n_series = n_series
            engine._remap_metrics([str(m) for m in data["metric_names"].tolist()])
            for rule in engine.rules:
                key = f"rule:{rule.id}:fingerprint"
                size = n_dev if _device_level(rule) else n_series
                state = engine._state[rule.id]
                state.ensure(size)
                if key in data and str(data[key]) == rule.model_dump_json():
                    state.load(f"rule:{rule.id}:", data, size)
            engine._on_new_series(np.arange(n_series))
        return engine

    def _remap_metrics(self, saved_names: list[str]) -> None:
        """Translate saved metric codes to this catalog's and rebuild the series table."""
        n = self._n_series
        missing = set(saved_names) - set(METRIC_CODES)
        if missing:
            raise ValueError(f"snapshot has metrics no longer in the catalog: {sorted(missing)}")
        codes = np.array([METRIC_CODES[name] for name in saved_names], dtype=np.int8)
        metric = self._series["metric"]
        metric[:n] = codes[metric[:n]]
        self._table["series"][self._series["dev"][:n], metric[:n]] = np.arange(n)

    # ---- setup ------------------------------------------------------------------------------

    def _new_state(self, rule: AnyRule) -> Arrays:
        state = Arrays()
        state.add("active", np.bool_, False)
        if _is_signal(rule):
            state.add("raise_since", np.int64, -1)
            state.add("clear_since", np.int64, -1)
        if isinstance(rule, DeltaBaselineRule):
            state.add("base_start", np.int64, -1)
            state.add("base_n", np.intp, 0)
            state.add("base_buf", np.float64, np.nan, width=rule.baseline_samples)
            state.add("base_value", np.float64, np.nan)
            state.add("base_ready", np.bool_, False)
        if isinstance(rule, DeltaReferenceRule):
            state.add("ref_series", np.intp, -1)
        return state

    def _sync_devices(self) -> None:
        """Take in devices interned since the last call: registry scope masks, array sizes."""
        n_new = len(self.devices)
        if n_new == self._n_dev:
            return
        self._dev.ensure(n_new)
        self._table.ensure(n_new)
        self._scope.ensure(n_new)
        for rule in self.rules:
            if _device_level(rule):
                self._state[rule.id].ensure(n_new)
        new = range(self._n_dev, n_new)
        infos = [self.registry.get(self.devices.ids[i]) for i in new]
        memo: dict[tuple[str, DeviceInfo | None], bool] = {}
        for rule in self.rules:
            mask = self._scope[rule.id]
            if rule.id not in self._filtered:
                mask[self._n_dev : n_new] = True
                continue
            for i, info in zip(new, infos, strict=True):
                key = (rule.id, info)
                if key not in memo:
                    memo[key] = device_matches(rule.scope, info)
                mask[i] = memo[key]
        self._n_dev = n_new

    def _series_index(self, dev: Idx, metric: Idx) -> Idx:
        """Series indices for (device, metric) pairs, creating series seen for the first time."""
        table = self._table["series"]
        index: Idx = table[dev, metric]
        missing = index < 0
        if not missing.any():
            return index
        keys = np.unique(dev[missing] * _M + metric[missing])
        first = self._n_series
        ids = np.arange(first, first + len(keys), dtype=np.intp)
        size = first + len(keys)
        self._series.ensure(size)
        for rule in self.rules:
            if not _device_level(rule):
                self._state[rule.id].ensure(size)
        table[keys // _M, keys % _M] = ids
        self._series["dev"][ids] = keys // _M
        self._series["metric"][ids] = keys % _M
        self._n_series = size
        self._on_new_series(ids)
        result: Idx = table[dev, metric]
        return result

    def _on_new_series(self, ids: Idx) -> None:
        """Resolve reference-device series for delta_reference rules (only when series appear)."""
        for rule in self._signal:
            if not isinstance(rule, DeltaReferenceRule):
                continue
            pending = self._ref_pending[rule.id]
            code = METRIC_CODES[rule.metric]
            for s in ids[self._series["metric"][ids] == code].tolist():
                device_id = self.devices.ids[int(self._series["dev"][s])]
                info = self.registry.get(device_id)
                ref = rule.references.get(device_id) or (info.reference if info else None)
                if ref:
                    pending[s] = (ref, code)
            ref_series = self._state[rule.id]["ref_series"]
            for s, (ref, ref_code) in list(pending.items()):
                ref_dev = self.devices.get(ref)
                if ref_dev is None or ref_dev >= self._n_dev:
                    continue
                found = int(self._table["series"][ref_dev, ref_code])
                if found >= 0:
                    ref_series[s] = found
                    del pending[s]

    # ---- evaluation -------------------------------------------------------------------------

    def _round(self, s: Idx, t: I64, v: F64, events: list[AlertEvent]) -> None:
        """One vectorized step: at most one reading per series."""
        ser = self._series
        head = ser["ring_head"][s]
        slot = s * self.window_capacity + head  # flat indices scatter faster than 2-D ones
        ser["ring_ts"].reshape(-1)[slot] = t
        ser["ring_val"].reshape(-1)[slot] = v
        ser["ring_head"][s] = (head + 1) % self.window_capacity
        ser["last_ts"][s] = t
        ser["last_val"][s] = v
        codes = ser["metric"][s]
        by_metric = np.argsort(codes, kind="stable")  # int8 keys: a radix sort
        bounds = np.searchsorted(codes[by_metric], np.arange(_M + 1))
        for code in range(_M):
            lo, hi = int(bounds[code]), int(bounds[code + 1])
            if lo == hi or not self._by_metric[code]:
                continue
            rows = by_metric[lo:hi]
            ss, tt, vv = s[rows], t[rows], v[rows]
            for rule in self._by_metric[code]:
                if rule.id in self._filtered:
                    ok = self._scope[rule.id][ser["dev"][ss]]
                    self._evaluate(rule, ss[ok], tt[ok], vv[ok], events)
                else:
                    self._evaluate(rule, ss, tt, vv, events)

    def _evaluate(self, rule: SignalRule, s: Idx, t: I64, v: F64, events: list[AlertEvent]) -> None:
        """Compute the rule's signal for these readings and step its hysteresis."""
        if len(s) == 0:
            return
        self.stats.evaluations += len(s)
        signal = self._signal_of(rule, s, t, v)
        state = self._state[rule.id]
        r_on = test(rule.raise_, signal)
        c_on = test(rule.clear, signal)
        r_since = _since(state["raise_since"], s, t, r_on)
        c_since = _since(state["clear_since"], s, t, c_on)
        r_held = r_on & (t - r_since >= rule.raise_.for_us)
        c_held = c_on & (t - c_since >= rule.clear.for_us)
        was = state["active"][s]
        now = np.where(was, ~c_held, r_held)
        state["active"][s] = now
        changed = np.flatnonzero(was != now)
        for i in changed.tolist():
            since = int(r_since[i]) if now[i] else int(c_since[i])
            self._emit(rule, int(s[i]), int(t[i]), float(signal[i]), since, bool(now[i]), events)

    def _signal_of(self, rule: SignalRule, s: Idx, t: I64, v: F64) -> F64:
        if isinstance(rule, RepeatingRule):
            return count_in_window(rule.match, self._series["ring_ts"][s],
                                   self._series["ring_val"][s], t, rule.within)
        if isinstance(rule, RateRule):
            return rate_per_hour(self._series["ring_ts"][s], self._series["ring_val"][s], t, v,
                                 rule.window, rule.min_span)
        if isinstance(rule, ZScoreRule):
            return zscore(self._series["ring_ts"][s], self._series["ring_val"][s], t, v,
                          rule.window, rule.min_count)
        if isinstance(rule, DeltaBaselineRule):
            return self._baseline_delta(rule, s, t, v)
        if isinstance(rule, DeltaReferenceRule):
            ref = self._state[rule.id]["ref_series"][s]
            has = ref >= 0
            ref_c = np.where(has, ref, 0)
            ref_ts = self._ref_ts[ref_c] if len(self._ref_ts) else np.zeros_like(t)
            ok = has & (ref_ts > 0) & (np.abs(t - ref_ts) <= rule.max_age)
            ref_val = self._ref_val[ref_c] if len(self._ref_val) else np.zeros_like(v)
            return np.where(ok, v - ref_val, np.nan)
        return v

    def _baseline_delta(self, rule: DeltaBaselineRule, s: Idx, t: I64, v: F64) -> F64:
        """Value minus the median of the series' first ``baseline``; NaN while it is learnt."""
        st = self._state[rule.id]
        start = st["base_start"][s]
        start = np.where(start < 0, t, start)
        st["base_start"][s] = start
        ready = st["base_ready"][s]
        learning = ~ready & (t < start + rule.baseline)
        count = st["base_n"][s]
        take = learning & (count < rule.baseline_samples)
        st["base_buf"][s[take], count[take]] = v[take]
        st["base_n"][s[take]] = count[take] + 1
        closing = ~ready & ~learning
        if closing.any():
            closed = s[closing]
            st["base_value"][closed] = row_median(st["base_buf"][closed], st["base_n"][closed])
            st["base_ready"][closed] = True
        delta: F64 = np.where(ready | closing, v - st["base_value"][s], np.nan)
        return delta

    def _emit(self, rule: SignalRule, s: int, t: int, signal: float, since: int, raised: bool,
              events: list[AlertEvent]) -> None:
        """Build one event with the ring-buffer window as evidence."""
        ser = self._series
        order = (int(ser["ring_head"][s]) + np.arange(self.window_capacity)) % (
            self.window_capacity)
        ts = ser["ring_ts"][s, order]
        vals = ser["ring_val"][s, order]
        keep = (ts >= window_start(rule, t, since)) & (ts <= t)
        window = list(zip(ts[keep].tolist(), vals[keep].tolist(), strict=True))
        extra: dict[str, Any] = {}
        if isinstance(rule, DeltaBaselineRule):
            extra["baseline"] = float(self._state[rule.id]["base_value"][s])
        if isinstance(rule, DeltaReferenceRule):
            ref = int(self._state[rule.id]["ref_series"][s])
            extra["reference_device"] = self.devices.ids[int(ser["dev"][ref])]
            extra["reference_value"] = float(self._ref_val[ref])
        device_id = self.devices.ids[int(ser["dev"][s])]
        events.append(signal_event(rule, device_id, RAISED if raised else CLEARED, t, signal,
                                   window, extra))

    def _clear_series_silence(self, s: Idx, t: I64, events: list[AlertEvent]) -> None:
        """A series' first accepted reading in a batch ends its silence alerts."""
        for rule in self._silence:
            if rule.scope.metric is None:
                continue
            active = self._state[rule.id]["active"]
            hit = np.flatnonzero(active[s])
            active[s[hit]] = False
            for i in hit.tolist():
                si = int(s[i])
                device_id = self.devices.ids[int(self._series["dev"][si])]
                last = int(self._series["last_ts"][si])
                events.append(silence_event(rule, device_id, CLEARED, int(t[i]), last))

    def _clear_device_silence(self, dev_first: I64, events: list[AlertEvent]) -> None:
        """A device's first accepted reading in a batch ends its device-wide silence alerts."""
        for rule in self._silence:
            if rule.scope.metric is not None:
                continue
            active = self._state[rule.id]["active"][: self._n_dev]
            hit = np.flatnonzero(active & (dev_first < np.iinfo(np.int64).max))
            active[hit] = False
            for d in hit.tolist():
                last = int(self._dev["last_ts"][d])
                events.append(silence_event(rule, self.devices.ids[d], CLEARED,
                                            int(dev_first[d]), last))

    def _device_active(self, rule_id: str) -> NDArray[np.bool_]:
        """Per device: is the rule active on any of its series."""
        active = self._state[rule_id]["active"]
        rule = next(r for r in self.rules if r.id == rule_id)
        if _device_level(rule):
            return active[: self._n_dev].copy()
        out = np.zeros(self._n_dev, dtype=np.bool_)
        out[self._series["dev"][: self._n_series][active[: self._n_series]]] = True
        return out

    def _composites(self, at_us: I64, events: list[AlertEvent]) -> None:
        """Step composite rules on devices with an ``at_us`` (> 0) in dependency order."""
        for rule in self._composite:
            parts = np.vstack([self._device_active(c) for c in rule.components])
            every: NDArray[np.bool_] = np.all(parts, axis=0)
            some: NDArray[np.bool_] = np.any(parts, axis=0)
            on = every if rule.all_of is not None else some
            off = ~every if rule.clear_rule == "not_all_active" else ~some
            active = self._state[rule.id]["active"]
            idx = np.flatnonzero((at_us > 0) & self._scope[rule.id][: self._n_dev])
            was = active[idx]
            raise_ = ~was & on[idx]
            clear = was & off[idx]
            active[idx[raise_]] = True
            active[idx[clear]] = False
            for d in idx[raise_ | clear].tolist():
                names = [c for c, p in zip(rule.components, parts[:, d], strict=True) if p]
                events.append(composite_event(rule, self.devices.ids[d],
                                              RAISED if active[d] else CLEARED,
                                              int(at_us[d]), names))


def _series_time_order(series: Idx, ts: I64, n_series: int) -> Idx:
    """A stable order by (series, ts), skipping the full sort in the common cases."""
    if len(series) <= 1 or np.bincount(series, minlength=n_series).max() <= 1:
        return np.arange(len(series))  # one reading per series: nothing to order
    if np.all(ts[1:] >= ts[:-1]):
        return np.argsort(series, kind="stable")  # already in time order
    order: Idx = np.lexsort((ts, series))
    return order


def _since(since_arr: I64, s: Idx, t: I64, on: NDArray[np.bool_]) -> I64:
    """Update and return when each condition's current true-run started (-1 when false)."""
    since = since_arr[s]
    since = np.where(on, np.where(since < 0, t, since), -1)
    since_arr[s] = since
    return since


def _is_signal(rule: AnyRule) -> bool:
    return isinstance(rule, SIGNAL_KINDS)


def _device_level(rule: AnyRule) -> bool:
    """Rules whose state is per device rather than per series."""
    return isinstance(rule, CompositeRule) or (
        isinstance(rule, SilenceRule) and rule.scope.metric is None)


def _has_filter(rule: AnyRule) -> bool:
    scope = rule.scope
    return scope.kind is not None or scope.model is not None or scope.site is not None
