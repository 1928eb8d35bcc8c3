"""The vectorized rule engine: all series and all rules per batch with numpy; pure, no I/O.

State is struct-of-arrays. Series (device, metric) get dense indices; per series the engine keeps
the last accepted timestamp/value and a ring buffer of the last ``window_capacity`` readings.
Per (rule, series) it keeps the active flag, the raise/clear sustain starts and, for baseline
rules, the baseline buffer and median. A batch is ordered by (series, ts), filtered by the
late/duplicate policy and then evaluated in *rounds*: round k holds the k-th accepted reading of
every series in the batch, so each round is one vectorized step over all series and the Python
loop runs over rounds, metrics and rules, never over readings.

Hot-path choices (see docs/rules.md, Benchmark): a round is grouped by metric once so each rule
touches only readings of its metric; window rules keep running counts and sums over the ring
instead of rescanning it; a value rule does its full hysteresis step only on readings that pass
its raise test or whose (rule, series) is not at rest; series whose rules need no evidence window
skip ring maintenance; rule kinds that can change nothing (composites, silence clears) are
skipped by active-alert counts. A batch made of a few runs of increasing series, each series in
time order (e.g. several readings per series appended round after round), is evaluated run by
run without sorting. Rings are slot-major (``state.Ring``); metrics without window rules push
only readings inside a sustain run, the only ones their evidence can show.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
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
from rules.signals import EMPTY_TS, disjoint, rate_of, row_median, test, zscore_of
from rules.state import Arrays, Ring

# 2: rings of metrics without window rules hold only readings inside a sustain run
# ("full_ring_metrics" lists the others); version 1 snapshots still load.
SNAPSHOT_VERSION = 2
_MAX_RUNS = 64  # beyond this many runs of increasing series a batch is sorted instead
_NEVER = np.iinfo(np.int64).min
_M = len(METRIC_NAMES)
RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Idx = NDArray[np.intp]
Bool = NDArray[np.bool_]
WindowRule = RepeatingRule | RateRule | ZScoreRule
_WINDOW_KINDS = (RepeatingRule, RateRule, ZScoreRule)


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
        self,
        rules: Sequence[AnyRule],
        registry: Registry | None = None,
        *,
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
        self._by_id = {r.id: r for r in self.rules}
        for rule in self._signal:
            if isinstance(rule, RepeatingRule) and rule.raise_.test[1] > window_capacity:
                raise ValueError(f"rule {rule.id!r}: count above window capacity {window_capacity}")
        self._by_metric: list[list[SignalRule]] = [[] for _ in range(_M)]
        for rule in self._signal:
            self._by_metric[METRIC_CODES[rule.metric]].append(rule)
        self._rule_metrics = [m for m in range(_M) if self._by_metric[m]]
        # With disjoint raise/clear tests the clear timer only matters while active (the raising
        # reading fails the clear test and resets it), so at-rest series can be skipped.
        self._track_clear = {r.id: not disjoint(r.raise_, r.clear) for r in self._signal}
        # Evidence is the ring from the sustain start; with no durations and disjoint tests that
        # is always just the current reading, so such metrics need no ring.
        self._ring_metric = np.zeros(_M, dtype=np.bool_)
        for rule in self._signal:
            if (
                isinstance(rule, _WINDOW_KINDS)
                or rule.raise_.for_us
                or rule.clear.for_us
                or self._track_clear[rule.id]
            ):
                self._ring_metric[METRIC_CODES[rule.metric]] = True
        # Window rules read every recent reading from the ring. Other rules only read it for
        # evidence: the readings from the start of a sustain run that is still going. Those are
        # exactly readings at which some rule of the metric was not at rest (see ``_group``),
        # so such metrics push only those and at-rest series leave the ring alone.
        self._full_ring = np.zeros(_M, dtype=np.bool_)
        for rule in self._signal:
            if isinstance(rule, _WINDOW_KINDS):
                self._full_ring[METRIC_CODES[rule.metric]] = True
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
        self._series.add("ring_head", np.intp, 0)
        self._ring = Ring(window_capacity)
        self._scratch = Arrays()  # per-batch working space, never snapshotted
        self._scratch.add("seen_ts", np.int64, _NEVER)  # previous reading in the batch
        self._state: dict[str, Arrays] = {r.id: self._new_state(r) for r in self.rules}
        # Derived per (rule, series) state, rebuilt from the snapshot state on restore.
        self._derived: dict[str, Arrays] = {r.id: self._new_derived(r) for r in self._signal}
        self._n_active: dict[str, int] = {r.id: 0 for r in self.rules}
        self._ref_pending: dict[str, dict[int, tuple[str, int]]] = {
            r.id: {} for r in self._signal if isinstance(r, DeltaReferenceRule)
        }

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
        value = cols.value.astype(np.float64, copy=False)
        events: list[AlertEvent] = []
        starts = _run_starts(series)
        if 1 < len(starts) <= _MAX_RUNS:
            runs = self._accept_runs(series, cols.ts_us, value, cols.metric, starts)
            if runs is not None:
                return self._process_runs(runs, events)
        if len(starts) == 1 or _each_once(series, self._n_series):
            s, t, v, codes = self._accept_unique(series, cols.ts_us, value, cols.metric)
            if len(s) == 0:
                return []
            self._clear_series_silence(s, t, events)
            self._rounds(s, t, v, codes, None, events)
            s_end, t_end, v_end = s, t, v
        else:
            order = _series_time_order(series, cols.ts_us)
            s, t, v, codes, rank = self._accept_sorted(
                series[order], cols.ts_us[order], value[order], cols.metric[order]
            )
            if len(s) == 0:
                return []
            first = rank == 0
            self._clear_series_silence(s[first], t[first], events)
            self._rounds(s, t, v, codes, rank, events)
            end = np.ones(len(s), dtype=np.bool_)
            end[:-1] = s[1:] != s[:-1]
            s_end, t_end, v_end = s[end], t[end], v[end]
        # Updated only now: delta_reference compares against values as of the previous batch.
        self._series["last_ts"][s_end] = t_end
        self._series["last_val"][s_end] = v_end
        self._device_bookkeeping(lambda: (s, t), events)
        events.sort(key=event_order)
        return events

    def _process_runs(self, runs: list[_Run], events: list[AlertEvent]) -> list[AlertEvent]:
        """Evaluate a batch that is a few runs of increasing series, each series in time order.

        Rule state is per series, so each run is a round by itself: no sort, no ranks.
        """
        for run in runs:
            if len(run.s):
                self._clear_series_silence(run.s[run.first], run.t[run.first], events)
                self._rounds(run.s, run.t, run.v, run.codes, None, events)
        # Updated only now: delta_reference compares against values as of the previous batch.
        for run in runs:  # later runs hold later readings of a series
            self._series["last_ts"][run.s] = run.t
            self._series["last_val"][run.s] = run.v
        self._device_bookkeeping(
            lambda: (
                np.concatenate([run.s for run in runs]),
                np.concatenate([run.t for run in runs]),
            ),
            events,
        )
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
                    self._scope[rule.id][dev]
                )
                ids = dev
            fire = np.flatnonzero(scope & ~active[:n] & (last > 0) & (now_us - last >= rule.after))
            active[fire] = True
            self._n_active[rule.id] += len(fire)
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
            "meta": np.array(
                [SNAPSHOT_VERSION, self.window_capacity, self._n_dev, self._n_series],
                dtype=np.int64,
            ),
            "stats": np.array(list(asdict(self.stats).values()), dtype=np.int64),
            "device_ids": np.array(self.devices.ids[: self._n_dev], dtype=np.str_),
            "metric_names": np.array(METRIC_NAMES, dtype=np.str_),
            "ring_metrics": _names(self._ring_metric),
            "full_ring_metrics": _names(self._full_ring),
        }
        arrays.update(self._dev.dump("dev:", self._n_dev))
        arrays.update(self._series.dump("series:", self._n_series))
        arrays.update(self._ring.dump("series:", self._n_series))
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
            if version not in (1, SNAPSHOT_VERSION):
                raise ValueError(f"snapshot version {version} is not {SNAPSHOT_VERSION}")
            engine = cls(rules, registry, window_capacity=capacity)
            engine.stats = EngineStats(*(int(x) for x in data["stats"]))
            for device_id in data["device_ids"].tolist():
                engine.devices.intern(str(device_id))
            engine._sync_devices()
            engine._dev.load("dev:", data, n_dev)
            engine._series.load("series:", data, n_series)
            engine._ring.load("series:", data, n_series)
            engine._ensure_series(n_series)
            engine._n_series = n_series
            engine._remap_metrics([str(m) for m in data["metric_names"].tolist()])
            # Older snapshots kept every ring; otherwise only the metrics listed had one.
            kept = (
                {str(m) for m in data["ring_metrics"].tolist()}
                if "ring_metrics" in data
                else set(METRIC_NAMES)
            )
            # Version 1 rings held every reading; later only the listed metrics' rings do.
            full = (
                {str(m) for m in data["full_ring_metrics"].tolist()}
                if "full_ring_metrics" in data
                else kept
            )
            engine._drop_stale_rings(kept, full)
            for rule in engine.rules:
                key = f"rule:{rule.id}:fingerprint"
                size = n_dev if _device_level(rule) else n_series
                state = engine._state[rule.id]
                state.ensure(size)
                if key in data and str(data[key]) == rule.model_dump_json():
                    state.load(f"rule:{rule.id}:", data, size)
                engine._n_active[rule.id] = int(np.count_nonzero(state["active"][:size]))
            engine._on_new_series(np.arange(n_series))
            engine._rebuild_derived(np.arange(n_series))
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

    def _drop_stale_rings(self, kept: set[str], full: set[str]) -> None:
        """Empty rings that cannot serve now: no ring then, or a partial one now read in full."""
        n = self._n_series
        stale = np.array(
            [
                name not in (full if self._full_ring[code] else kept)
                for code, name in enumerate(METRIC_NAMES)
            ],
            dtype=np.bool_,
        )
        rows = np.flatnonzero(
            stale[self._series["metric"][:n]] & self._ring_metric[self._series["metric"][:n]]
        )
        self._ring.clear(rows)
        self._series["ring_head"][rows] = 0

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

    def _new_derived(self, rule: SignalRule) -> Arrays:
        derived = Arrays()
        derived.add("busy", np.bool_, False)  # active, or a sustain timer running
        if isinstance(rule, _WINDOW_KINDS):
            derived.add("n", np.intp, 0)  # ring readings still inside the window
            derived.add("sum", np.float64, 0.0)  # repeating: matches; zscore: sum of values
        if isinstance(rule, ZScoreRule):
            derived.add("sumsq", np.float64, 0.0)
        return derived

    def _ensure_series(self, size: int) -> None:
        self._series.ensure(size)
        self._ring.ensure(size)
        self._scratch.ensure(size)
        for rule in self.rules:
            if not _device_level(rule):
                self._state[rule.id].ensure(size)
        for derived in self._derived.values():
            derived.ensure(size)

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
        flat = self._table["series"].reshape(-1)
        key = dev * _M
        key += metric
        index: Idx = flat[key]
        if len(index) == 0 or int(index.min()) >= 0:
            return index
        missing = index < 0
        keys = np.unique(key[missing])
        first = self._n_series
        ids = np.arange(first, first + len(keys), dtype=np.intp)
        size = first + len(keys)
        self._ensure_series(size)
        flat = self._table["series"].reshape(-1)
        flat[keys] = ids
        self._series["dev"][ids] = keys // _M
        self._series["metric"][ids] = keys % _M
        self._n_series = size
        self._on_new_series(ids)
        result: Idx = flat[key]
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

    def _rebuild_derived(self, ids: Idx) -> None:
        """Recompute busy flags and window counts/sums of ``ids`` from state and rings."""
        cap = self.window_capacity
        ser = self._series
        for rule in self._signal:
            st = self._state[rule.id]
            busy = st["active"][ids] | (st["raise_since"][ids] >= 0)
            if self._track_clear[rule.id]:
                busy |= st["clear_since"][ids] >= 0
            derived = self._derived[rule.id]
            derived["busy"][ids] = busy
            if not isinstance(rule, _WINDOW_KINDS):
                continue
            rows = ids[ser["metric"][ids] == METRIC_CODES[rule.metric]]
            ring_ts, ring_val = self._ring.rows(rows)
            filled = np.count_nonzero(ring_ts != EMPTY_TS, axis=1)
            # What the window state holds right after a reading: at most cap - 1 readings for
            # z-score and repeating (the next push evicts one), all ring readings for rate.
            n = filled if isinstance(rule, RateRule) else np.minimum(filled, cap - 1)
            derived["n"][rows] = n
            if isinstance(rule, RateRule):
                continue
            newest = ser["ring_head"][rows] - 1
            total = np.zeros(len(rows))
            total_sq = np.zeros(len(rows))
            for back in range(cap - 1, -1, -1):  # oldest first, as a plain sum would add them
                use = n > back
                val = ring_val[np.arange(len(rows)), (newest - back) % cap]
                if isinstance(rule, RepeatingRule):
                    total += use & test(rule.match, val)
                else:
                    total += np.where(use, val, 0.0)
                    total_sq += np.where(use, val * val, 0.0)
            derived["sum"][rows] = total
            if isinstance(rule, ZScoreRule):
                derived["sumsq"][rows] = total_sq

    # ---- the reading policy -----------------------------------------------------------------

    def _accept_unique(self, s: Idx, t: I64, v: F64, codes: Idx) -> tuple[Idx, I64, F64, Idx]:
        """Policy for a batch with at most one reading per series."""
        last = self._series["last_ts"][s]
        keep = t > last
        n_keep = int(np.count_nonzero(keep))
        if n_keep < len(s):
            n_late = int(np.count_nonzero(t < last))
            self.stats.dropped_late += n_late
            self.stats.dropped_duplicate += len(s) - n_keep - n_late
            s, t, v, codes = s[keep], t[keep], v[keep], codes[keep]
        self.stats.accepted += n_keep
        return s, t, v, codes

    def _accept_runs(self, s: Idx, t: I64, v: F64, codes: Idx, starts: Idx) -> list[_Run] | None:
        """Policy for a batch of runs of increasing series; None if a series goes back in time.

        When every series' readings are in time order along the batch, comparing each reading
        with the larger of the stored last timestamp and the series' previous reading in the
        batch is the policy of the sorted order: an earlier reading that was dropped is never
        later than what it was compared with.
        """
        seen = self._scratch["seen_ts"]
        stored = self._series["last_ts"]
        bounds = [*starts.tolist(), len(s)]
        runs: list[_Run] = []
        ok = True
        for lo, hi in itertools.pairwise(bounds):
            rs, rt = s[lo:hi], t[lo:hi]
            prev = seen[rs]
            if bool(np.any(rt < prev)):
                ok = False
                break
            seen[rs] = rt
            last = stored[rs]
            keep = rt > np.maximum(prev, last)
            # a series had an accepted reading earlier in the batch iff its previous one is newer
            # than the stored timestamp (the first such reading was accepted)
            runs.append(_Run(rs, rt, v[lo:hi], codes[lo:hi], keep, prev <= last))
        seen[s] = _NEVER
        if not ok:
            return None
        for run in runs:
            n_keep = int(np.count_nonzero(run.keep))
            if n_keep < len(run.s):
                n_late = int(np.count_nonzero(run.t < stored[run.s]))
                self.stats.dropped_late += n_late
                self.stats.dropped_duplicate += len(run.s) - n_keep - n_late
                run.select(run.keep)
            self.stats.accepted += n_keep
        return runs

    def _accept_sorted(self, s: Idx, t: I64, v: F64, codes: Idx) -> tuple[Idx, I64, F64, Idx, Idx]:
        """Policy for a batch ordered by (series, ts); also each reading's rank in its series."""
        last = self._series["last_ts"][s]
        late = t < last
        repeat = np.zeros(len(s), dtype=np.bool_)
        repeat[1:] = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
        dup = ~late & ((t == last) | repeat)
        keep = ~(late | dup)
        self.stats.dropped_late += int(np.count_nonzero(late))
        self.stats.dropped_duplicate += int(np.count_nonzero(dup))
        s, t, v, codes = s[keep], t[keep], v[keep], codes[keep]
        self.stats.accepted += len(s)
        first = np.ones(len(s), dtype=np.bool_)
        first[1:] = s[1:] != s[:-1]
        positions = np.arange(len(s))
        rank: Idx = positions - np.maximum.accumulate(np.where(first, positions, 0))
        return s, t, v, codes, rank

    # ---- evaluation -------------------------------------------------------------------------

    def _rounds(
        self, s: Idx, t: I64, v: F64, codes: Idx, rank: Idx | None, events: list[AlertEvent]
    ) -> None:
        """Group readings by (round, metric) with one sort and evaluate each group in order."""
        if not self._rule_metrics:
            return
        key = codes if rank is None else rank * _M + codes
        # Unstable is fine (one reading per series per round) and several times faster here.
        perm = np.argsort(key)
        bounds = np.zeros(int(key.max()) + 2, dtype=np.intp)
        np.cumsum(np.bincount(key), out=bounds[1:])
        s, t, v = s[perm], t[perm], v[perm]
        n_rounds = (len(bounds) - 2) // _M + 1
        for r in range(n_rounds):
            for code in self._rule_metrics:
                g = r * _M + code
                if g + 1 >= len(bounds):
                    break
                lo, hi = int(bounds[g]), int(bounds[g + 1])
                if lo < hi:
                    self._group(code, s[lo:hi], t[lo:hi], v[lo:hi], events)

    def _group(self, code: int, s: Idx, t: I64, v: F64, events: list[AlertEvent]) -> None:
        """One metric's readings of one round: push them on the ring, step each rule."""
        if self._full_ring[code]:
            head = self._push(s, t, v)
            for rule, sel in self._scoped(code, s):
                if sel is None:
                    work = self._prepare(rule, s, t, v, head)
                    if work is not None:
                        self._step(rule, s, t, v, *work, events)
                else:
                    ss = s[sel]
                    work = self._prepare(rule, ss, t[sel], v[sel], head[sel])
                    if work is not None:
                        self._step(rule, ss, t[sel], v[sel], *work, events)
            return
        # Evidence-only ring: push the readings some rule is not at rest at, before any event
        # reads the ring. Every reading of a sustain run still going is such a reading.
        todo: list[tuple[SignalRule, Idx, F64, Idx, Bool]] = []
        for rule, sel in self._scoped(code, s):
            if sel is None:
                work = self._prepare(rule, s, t, v, None)
                if work is not None:
                    todo.append((rule, work[0], work[1], work[0], work[2]))
            else:
                work = self._prepare(rule, s[sel], t[sel], v[sel], None)
                if work is not None:
                    todo.append((rule, sel[work[0]], work[1], work[0], work[2]))
        if not todo:
            return
        if self._ring_metric[code]:
            pushed = (
                todo[0][1]
                if len(todo) == 1
                else np.unique(np.concatenate([item[1] for item in todo]))
            )
            self._push(s[pushed], t[pushed], v[pushed])
        for rule, rows, signal, _, r_on in todo:
            self._step(rule, s[rows], t[rows], v[rows], np.arange(len(rows)), signal, r_on, events)

    def _scoped(self, code: int, s: Idx) -> list[tuple[SignalRule, Idx | None]]:
        """The metric's rules with the readings in their scope (None: all of them)."""
        out: list[tuple[SignalRule, Idx | None]] = []
        dev: Idx | None = None
        for rule in self._by_metric[code]:
            if rule.id in self._filtered:
                if dev is None:
                    dev = self._series["dev"][s]
                out.append((rule, np.flatnonzero(self._scope[rule.id][dev])))
            else:
                out.append((rule, None))
        return out

    def _push(self, s: Idx, t: I64, v: F64) -> Idx:
        """Write readings into their series' rings; returns the slots written."""
        head: Idx = self._series["ring_head"][s]
        slot = head * self._ring.capacity
        slot += s  # flat indices scatter faster than 2-D ones
        ring_ts, ring_val = self._ring.flat()
        ring_ts[slot] = t
        ring_val[slot] = v
        nxt = head + 1
        nxt[nxt == self.window_capacity] = 0
        self._series["ring_head"][s] = nxt
        return head

    def _prepare(
        self, rule: SignalRule, s: Idx, t: I64, v: F64, head: Idx | None
    ) -> tuple[Idx, F64, Bool] | None:
        """The rule's signal; the readings whose step can change something, None if none.

        Returns (rows, signal at rows, raise test at rows).
        """
        if len(s) == 0:
            return None
        self.stats.evaluations += len(s)
        signal = self._signal_of(rule, s, t, v, head)
        r_on = test(rule.raise_, signal)
        work = r_on | self._derived[rule.id]["busy"][s]
        if self._track_clear[rule.id]:
            work |= test(rule.clear, signal)
        rows = np.flatnonzero(work)
        if len(rows) == 0:
            return None  # at rest and not raising: nothing can change
        return rows, signal[rows], r_on[rows]

    def _step(
        self,
        rule: SignalRule,
        s: Idx,
        t: I64,
        v: F64,
        rows: Idx,
        signal: F64,
        r_on: Bool,
        events: list[AlertEvent],
    ) -> None:
        """Step the hysteresis of the readings ``rows`` (with their signal and raise test)."""
        s, t = s[rows], t[rows]
        derived = self._derived[rule.id]
        c_on = test(rule.clear, signal)
        state = self._state[rule.id]
        r_since = _since(state["raise_since"], s, t, r_on)
        c_since = _since(state["clear_since"], s, t, c_on)
        r_held = r_on & (t - r_since >= rule.raise_.for_us)
        c_held = c_on & (t - c_since >= rule.clear.for_us)
        was = state["active"][s]
        now = np.where(was, ~c_held, r_held)
        state["active"][s] = now
        busy = now | (r_since >= 0)
        if self._track_clear[rule.id]:
            busy |= c_since >= 0
        derived["busy"][s] = busy
        changed = np.flatnonzero(was != now)
        for i in changed.tolist():
            since = int(r_since[i]) if now[i] else int(c_since[i])
            self._n_active[rule.id] += 1 if now[i] else -1
            self._emit(
                rule,
                int(s[i]),
                int(t[i]),
                float(v[rows[i]]),
                float(signal[i]),
                since,
                bool(now[i]),
                events,
            )

    def _signal_of(self, rule: SignalRule, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        if isinstance(rule, _WINDOW_KINDS):
            assert head is not None  # window rules always have a ring
            return self._window_signal(rule, s, t, v, head)
        if isinstance(rule, DeltaBaselineRule):
            return self._baseline_delta(rule, s, t, v)
        if isinstance(rule, DeltaReferenceRule):
            ser = self._series
            ref = self._state[rule.id]["ref_series"][s]
            has = ref >= 0
            ref_c = np.where(has, ref, 0)
            ref_ts = ser["last_ts"][ref_c]  # not yet updated: as of the previous batch
            ok = has & (ref_ts > 0) & (np.abs(t - ref_ts) <= rule.max_age)
            return np.where(ok, v - ser["last_val"][ref_c], np.nan)
        return v

    def _window_signal(self, rule: WindowRule, s: Idx, t: I64, v: F64, head: Idx) -> F64:
        """Window signals from running counts over the ring (``head`` = this reading's slot).

        The window of a series is its last ``n`` ring readings; each new reading joins it, the
        oldest leave when they fall out of the time window or are about to be overwritten.
        """
        cap = self.window_capacity
        d = self._derived[rule.id]
        ring_ts, ring_val = self._ring.flat()
        stride = self._ring.capacity
        n = d["n"][s]
        total = d["sum"][s]
        zscore = isinstance(rule, ZScoreRule)
        total_sq = d["sumsq"][s] if zscore else total
        if not zscore:  # repeating and rate windows include the current reading
            n += 1
            n[n > cap] = cap  # rate keeps no sums, so the push simply evicted the oldest
            if isinstance(rule, RepeatingRule):
                total += test(rule.match, v)
        span = rule.within if isinstance(rule, RepeatingRule) else rule.window
        limit = t - span
        # z-score's window is the readings before this one, so its oldest is n back, not n - 1;
        # the current reading itself never leaves (t > t - span)
        back = 0 if zscore else 1
        keep_min = 1 - back
        rows = np.flatnonzero(n > keep_min)
        while len(rows):
            tail = (head[rows] - n[rows] + back) % cap * stride + s[rows]
            out = ring_ts[tail] <= limit[rows]
            if not out.any():
                break
            rows, tail = rows[out], tail[out]
            n[rows] -= 1
            if isinstance(rule, RepeatingRule):
                total[rows] -= test(rule.match, ring_val[tail])
            elif zscore:
                old = ring_val[tail]
                total[rows] -= old
                total_sq[rows] -= old * old
            rows = rows[n[rows] > keep_min]
        if isinstance(rule, ZScoreRule):
            empty = n == 0
            total[empty] = 0.0  # an empty window restarts its sums exactly
            total_sq[empty] = 0.0
            signal = zscore_of(v, n, total, total_sq, rule.min_count, rule.min_std)
            n += 1
            total += v
            total_sq += v * v
        elif isinstance(rule, RateRule):
            oldest = (head - n + 1) % cap * stride + s
            signal = rate_of(v, t, ring_val[oldest], ring_ts[oldest], rule.min_span)
        else:
            signal = total.astype(np.float64)
        if not isinstance(rule, RateRule):
            # The next push overwrites the oldest of a full ring: let it leave while readable.
            full = np.flatnonzero(n == cap)
            if len(full):
                old = ring_val[(head[full] + 1) % cap * stride + s[full]]
                n[full] -= 1
                if isinstance(rule, RepeatingRule):
                    total[full] -= test(rule.match, old)
                else:
                    total[full] -= old
                    total_sq[full] -= old * old
            if zscore:
                self._rebase(s, n, head, total, total_sq)
                d["sumsq"][s] = total_sq
            d["sum"][s] = total
        d["n"][s] = n
        return signal

    def _rebase(self, s: Idx, n: Idx, head: Idx, total: F64, total_sq: F64) -> None:
        """Re-sum z-score windows from the ring once per ring turn, so rounding cannot drift.

        Staggered by series so that a fleet in lock step does not re-sum all at once.
        """
        cap = self.window_capacity
        rows = np.flatnonzero(head == s % cap)
        if len(rows) == 0:
            return
        _, ring_val = self._ring.flat()
        stride = self._ring.capacity
        sr = s[rows]
        nn = n[rows]
        back = np.arange(cap - 1, -1, -1)  # oldest first, the order a plain sum adds them in
        slots = (head[rows, None] - back) % cap * stride + sr[:, None]
        val = np.where(nn[:, None] > back, ring_val[slots], 0.0)
        # cumsum adds left to right, one element at a time, like the reference's sum()
        total[rows] = np.cumsum(val, axis=1)[:, -1]
        total_sq[rows] = np.cumsum(val * val, axis=1)[:, -1]

    def _baseline_delta(self, rule: DeltaBaselineRule, s: Idx, t: I64, v: F64) -> F64:
        """Value minus the median of the series' first ``baseline``; NaN while it is learnt."""
        st = self._state[rule.id]
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

    def _emit(
        self,
        rule: SignalRule,
        s: int,
        t: int,
        value: float,
        signal: float,
        since: int,
        raised: bool,
        events: list[AlertEvent],
    ) -> None:
        """Build one event with the ring-buffer window as evidence."""
        ser = self._series
        if self._ring_metric[METRIC_CODES[rule.metric]]:
            order = (int(ser["ring_head"][s]) + np.arange(self.window_capacity)) % (
                self.window_capacity
            )
            ts = self._ring.ts[order, s]
            vals = self._ring.val[order, s]
            keep = (ts >= window_start(rule, t, since)) & (ts <= t)
            window = list(zip(ts[keep].tolist(), vals[keep].tolist(), strict=True))
        else:
            window = [(t, value)]  # no durations: the run starts at this reading
        extra: dict[str, Any] = {}
        if isinstance(rule, DeltaBaselineRule):
            extra["baseline"] = float(self._state[rule.id]["base_value"][s])
        if isinstance(rule, DeltaReferenceRule):
            ref = int(self._state[rule.id]["ref_series"][s])
            extra["reference_device"] = self.devices.ids[int(ser["dev"][ref])]
            extra["reference_value"] = float(ser["last_val"][ref])
        device_id = self.devices.ids[int(ser["dev"][s])]
        events.append(
            signal_event(rule, device_id, RAISED if raised else CLEARED, t, signal, window, extra)
        )

    def _clear_series_silence(self, s: Idx, t: I64, events: list[AlertEvent]) -> None:
        """A series' first accepted reading in a batch ends its silence alerts."""
        for rule in self._silence:
            if rule.scope.metric is None or not self._n_active[rule.id]:
                continue
            active = self._state[rule.id]["active"]
            hit = np.flatnonzero(active[s])
            active[s[hit]] = False
            self._n_active[rule.id] -= len(hit)
            for i in hit.tolist():
                si = int(s[i])
                device_id = self.devices.ids[int(self._series["dev"][si])]
                last = int(self._series["last_ts"][si])
                events.append(silence_event(rule, device_id, CLEARED, int(t[i]), last))

    def _device_bookkeeping(
        self, accepted: Callable[[], tuple[Idx, I64]], events: list[AlertEvent]
    ) -> None:
        """Device-wide silence and composites: skipped when the active counts rule them out."""
        device_silence = [r for r in self._silence if r.scope.metric is None]
        composites = any(self._composite_may_change(r) for r in self._composite)
        if not device_silence and not composites:
            return
        s, t = accepted()
        dev = self._series["dev"][s]
        if any(self._n_active[r.id] for r in device_silence):
            dev_first = np.full(self._n_dev, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(dev_first, dev, t)
            self._clear_device_silence(dev_first, events)
        if device_silence:
            np.maximum.at(self._dev["last_ts"], dev, t)
        if composites:
            dev_last = np.zeros(self._n_dev, dtype=np.int64)
            np.maximum.at(dev_last, dev, t)
            self._composites(dev_last, events)

    def _clear_device_silence(self, dev_first: I64, events: list[AlertEvent]) -> None:
        """A device's first accepted reading in a batch ends its device-wide silence alerts."""
        for rule in self._silence:
            if rule.scope.metric is not None:
                continue
            active = self._state[rule.id]["active"][: self._n_dev]
            hit = np.flatnonzero(active & (dev_first < np.iinfo(np.int64).max))
            active[hit] = False
            self._n_active[rule.id] -= len(hit)
            for d in hit.tolist():
                last = int(self._dev["last_ts"][d])
                events.append(
                    silence_event(rule, self.devices.ids[d], CLEARED, int(dev_first[d]), last)
                )

    def _device_active(self, rule_id: str) -> NDArray[np.bool_]:
        """Per device: is the rule active on any of its series."""
        active = self._state[rule_id]["active"]
        if _device_level(self._by_id[rule_id]):
            return active[: self._n_dev].copy()
        out = np.zeros(self._n_dev, dtype=np.bool_)
        out[self._series["dev"][: self._n_series][active[: self._n_series]]] = True
        return out

    def _composite_may_change(self, rule: CompositeRule) -> bool:
        """Whether the composite is active anywhere or its components could raise it."""
        counts = [self._n_active[c] > 0 for c in rule.components]
        could_raise = all(counts) if rule.all_of is not None else any(counts)
        return could_raise or self._n_active[rule.id] > 0

    def _composites(self, at_us: I64, events: list[AlertEvent]) -> None:
        """Step composite rules on devices with an ``at_us`` (> 0) in dependency order."""
        for rule in self._composite:
            if not self._composite_may_change(rule):
                continue
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
            self._n_active[rule.id] += int(np.count_nonzero(raise_)) - int(np.count_nonzero(clear))
            for d in idx[raise_ | clear].tolist():
                names = [c for c, p in zip(rule.components, parts[:, d], strict=True) if p]
                events.append(
                    composite_event(
                        rule,
                        self.devices.ids[d],
                        RAISED if active[d] else CLEARED,
                        int(at_us[d]),
                        names,
                    )
                )


@dataclass
class _Run:
    """A stretch of a batch with strictly increasing series, after the policy."""

    s: Idx
    t: I64
    v: F64
    codes: Idx
    keep: Bool  # accepted by the policy
    first: Bool  # no earlier accepted reading of the series in the batch

    def select(self, keep: Bool) -> None:
        """Keep only the accepted readings."""
        self.s, self.t, self.v = self.s[keep], self.t[keep], self.v[keep]
        self.codes, self.first = self.codes[keep], self.first[keep]


def _run_starts(series: Idx) -> Idx:
    """Where each run of strictly increasing series starts (always 0 first)."""
    breaks = np.flatnonzero(series[1:] <= series[:-1])
    starts: Idx = np.empty(len(breaks) + 1, dtype=np.intp)
    starts[0] = 0
    np.add(breaks, 1, out=starts[1:])
    return starts


def _each_once(series: Idx, n_series: int) -> bool:
    """Whether no series appears twice; cheap when the batch is in series order."""
    if len(series) <= 1 or bool(np.all(series[1:] > series[:-1])):
        return True
    return bool(np.bincount(series, minlength=n_series).max() <= 1)


def _series_time_order(series: Idx, ts: I64) -> Idx:
    """A stable order by (series, ts), skipping the full sort when each series is in order."""
    n = len(series)
    bits = max(1, n.bit_length())
    if int(series.max()) < (1 << (62 - bits)):
        # series and position packed into one unique key: a fast unstable sort is stable
        order: Idx = np.argsort((series << bits) | np.arange(n))
    else:  # pragma: no cover - beyond 2**40 series
        order = np.argsort(series, kind="stable")
    s, t = series[order], ts[order]
    if bool(np.all((s[1:] != s[:-1]) | (t[1:] >= t[:-1]))):
        return order
    order = np.lexsort((ts, series))
    return order


def _since(since_arr: I64, s: Idx, t: I64, on: NDArray[np.bool_]) -> I64:
    """Update and return when each condition's current true-run started (-1 when false)."""
    since = since_arr[s]
    since = np.where(on, np.where(since < 0, t, since), -1)
    since_arr[s] = since
    return since


def _names(codes: Bool) -> NDArray[np.str_]:
    """Metric names of a per-code mask, for snapshots (never empty: savez needs a dtype)."""
    return np.array(
        [METRIC_NAMES[m] for m in np.flatnonzero(codes).tolist()] or [""], dtype=np.str_
    )


def _is_signal(rule: AnyRule) -> bool:
    return isinstance(rule, SIGNAL_KINDS)


def _device_level(rule: AnyRule) -> bool:
    """Rules whose state is per device rather than per series."""
    return isinstance(rule, CompositeRule) or (
        isinstance(rule, SilenceRule) and rule.scope.metric is None
    )


def _has_filter(rule: AnyRule) -> bool:
    scope = rule.scope
    return scope.kind is not None or scope.model is not None or scope.site is not None
