"""The vectorized rule engine: all series and all rules per batch with numpy; pure, no I/O.

State is struct-of-arrays (``rules.context.EngineState``). A batch is filtered by the reading
policy (``rules.policy``: out-of-window, late, duplicate), ordered by (series, ts) and evaluated
in *rounds*: round k holds the k-th accepted reading of every series in the batch, so each round
is one vectorized step over all series and the Python loop runs over rounds, metrics and rules,
never over readings. Each rule kind's signal and state live in its evaluator
(``rules.evaluators``); snapshots in ``rules.snapshot``.

Hot-path choices (see docs/rules.md, Benchmark): a round is grouped by metric once so each rule
touches only readings of its metric; window rules keep running counts and sums over the ring
instead of rescanning it; a value rule does its full hysteresis step only on readings that pass
its raise test or whose (rule, series) is not at rest; series whose rules need no evidence window
skip ring maintenance; rule kinds that can change nothing (composites, silence clears) are
skipped by active-alert counts. A batch made of a few runs of increasing series, each series in
time order (e.g. several readings per series appended round after round), is evaluated run by
run without sorting. Rings are slot-major (``state.Ring``); metrics without window rules push
only readings inside a sustain run, the only ones their evidence can show.

Patches of one wound (``rules.wounds``): a new device's first readings are recorded before its
batch is evaluated; a patch it supersedes has its active alerts cleared and its later readings
dropped. Composites replay their components' transitions in time order after each batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from contract.alert import AlertEvent
from contract.reading import Reading
from rules import baselines, snapshot, wounds
from rules.baselines import LearntBaselines
from rules.columns import METRIC_CODES, Columns, DeviceTable, columns_from_readings
from rules.context import F64, I64, EngineState, EngineStats, Idx
from rules.evaluators import (
    CompositeEvaluator,
    Observed,
    SignalEvaluator,
    SilenceEvaluator,
    device_active,
    signal_evaluator,
)
from rules.evaluators.base import Prepared
from rules.evidence import event_order, superseded_event
from rules.loader import normalize_rules
from rules.model import SIGNAL_KINDS, AnyRule, CompositeRule, SilenceRule
from rules.policy import (
    ReadingPolicy,
    Run,
    accept_runs,
    accept_sorted,
    accept_unique,
    each_once,
    once_order,
    run_starts,
    series_time_order,
    within_window,
)
from rules.registry import Registry
from rules.runs import as_index, immutable
from rules.snapshot import SNAPSHOT_VERSION

__all__ = ["SNAPSHOT_VERSION", "EngineStats", "ReadingPolicy", "RuleEngine"]

_MAX_RUNS = 64  # beyond this many runs of increasing series a batch is sorted instead
_U16_MAX = 65_535  # np.iinfo(np.uint16).max, spelled out: iinfo is rebuilt on every call
Scoped = list[tuple[SignalEvaluator, Idx | None]]  # a metric's rules, with readings in scope


class Grouping:
    """Readings grouped by a key (round × width + metric): a permutation and group bounds.

    It also keeps the series it last grouped, group by group, as read-only arrays: when the
    next batch has the same series too, the very same arrays come back, and lookups keyed by
    array identity (``EngineState.rows``, ``rules.runs``) are found again.
    """

    def __init__(self, key: Idx, perm: Idx, bounds: Idx) -> None:
        self.key, self.perm, self.bounds = key, perm, bounds
        self._series: Idx | None = None
        self._groups: list[Idx] = []

    @classmethod
    def of(cls, key: Idx) -> Grouping:
        """Group ``key`` (a copy is kept)."""
        top = int(key.max())
        bounds = np.zeros(top + 2, dtype=np.intp)
        np.cumsum(np.bincount(key), out=bounds[1:])
        return cls(key.copy(), _group_order(key, top), bounds)

    def series_groups(self, s: Idx) -> list[Idx]:
        """``s`` in group order, cut into its groups (index ``g``: key ``g``'s readings)."""
        if s is self._series or (self._series is not None and np.array_equal(self._series, s)):
            return self._groups
        grouped = s[self.perm]
        grouped.flags.writeable = False
        bounds = self.bounds.tolist()
        self._groups = [grouped[lo:hi] for lo, hi in itertools.pairwise(bounds)]
        # the series array itself if nothing can change it (``EngineState.series_index`` hands
        # back the same one for the same batch shape), else a copy to compare with
        self._series = s if immutable(s) else s.copy()
        return self._groups


def _group_order(key: Idx, top: int) -> Idx:
    """A permutation grouping ``key`` (non-negative ints up to ``top``) in increasing order.

    Small keys (every metric code; rounds × codes up to 65,535) are cast to 16 bits, where
    numpy's stable sort is a radix sort: linear, twice as fast as the quicksort of 64-bit keys.
    """
    if top <= _U16_MAX:
        return np.argsort(key.astype(np.uint16), kind="stable")
    # Unstable is fine (one reading per series per round) and faster than a stable 64-bit sort.
    return np.argsort(key)


class RuleEngine:
    """Evaluate rules over columnar batches of readings; returns raised/cleared AlertEvents."""

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
        self.window_capacity = window_capacity
        self.policy = policy or ReadingPolicy()
        ctx = self._ctx = EngineState(self.rules, self.registry, window_capacity, METRIC_CODES)
        self._signal = [signal_evaluator(r, ctx) for r in self.rules if isinstance(r, SIGNAL_KINDS)]
        self._silence = [SilenceEvaluator(r, ctx) for r in self.rules if isinstance(r, SilenceRule)]
        by_id = {r.id: r for r in self.rules}
        self._composite = [
            CompositeEvaluator(r, ctx, by_id) for r in self.rules if isinstance(r, CompositeRule)
        ]
        self._by_id = by_id
        self._by_metric: list[list[SignalEvaluator]] = [[] for _ in range(ctx.width)]
        for ev in self._signal:
            self._by_metric[ev.code].append(ev)
            # Window rules read every recent reading from the ring. Other rules only read it
            # for evidence: the readings from the start of a sustain run that is still going.
            # Those are exactly readings at which some rule of the metric was not at rest (see
            # ``_group``), so such metrics push only those and at-rest series skip the ring.
            ctx.ring_metric[ev.code] |= ev.needs_ring
            ctx.full_ring[ev.code] |= ev.window
        self._rule_metrics = [m for m in range(ctx.width) if self._by_metric[m]]
        self._device_silence = [ev for ev in self._silence if ev.per_device]
        # The last grouping by (round, metric): its key, permutation and group bounds.
        self._last_grouping: Grouping | None = None
        self._last_starts: tuple[Idx, Idx] | None = None  # series array, its run starts

    # ---- public API -------------------------------------------------------------------------

    @property
    def devices(self) -> DeviceTable:
        """Device ids interned to dense indices (shared with ``columns``)."""
        return self._ctx.devices

    @property
    def stats(self) -> EngineStats:
        """Counters of the reading policy and of the work done."""
        return self._ctx.stats

    @property
    def clock_us(self) -> int:
        """The newest accepted reading's timestamp (0 before the first): the data clock."""
        return self._ctx.clock

    def columns(self, readings: Sequence[Reading]) -> Columns:
        """Convert readings to columns against this engine's device table."""
        return columns_from_readings(readings, self._ctx.devices)

    def process_readings(
        self, readings: Sequence[Reading], now_us: int | None = None
    ) -> list[AlertEvent]:
        """Convenience: ``process(columns(readings), now_us)``."""
        return self.process(self.columns(readings), now_us)

    def process(self, cols: Columns, now_us: int | None = None) -> list[AlertEvent]:
        """Evaluate one batch that arrived at ``now_us`` (None: unknown, e.g. a replay).

        Events come sorted by (at_us, device, rule).
        """
        if len(cols) == 0:
            return []
        ctx = self._ctx
        cols = within_window(cols, self.policy.bound(ctx.clock, now_us), ctx.stats)
        if len(cols) == 0:
            return []
        ctx.sync_devices()
        series, new = ctx.series_index(cols.device, cols.metric)
        events: list[AlertEvent] = []
        if len(new):
            self._admit(new, cols, events)
        if ctx.any_retired:
            cols, series = self._drop_retired(cols, series)
            if len(cols) == 0:
                return self._finish(events)
        value = cols.value.astype(np.float64, copy=False)
        starts = self._run_starts(series)
        if 1 < len(starts) <= _MAX_RUNS:
            runs = accept_runs(ctx, series, cols.ts_us, value, cols.metric, starts)
            if runs is not None:
                return self._process_runs(runs, events)
        if len(starts) == 1 or each_once(series, ctx.n_series):
            ts, metric = cols.ts_us, cols.metric
            if len(starts) > 1:
                # Devices heard in another order: the rows in series order, so that the state
                # of a fleet's series is read and written as slices, not gathered.
                order = once_order(series, ctx.n_series)
                series, ts, value, metric = series[order], ts[order], value[order], metric[order]
            s, t, v, codes = accept_unique(ctx, series, ts, value, metric)
            if len(s) == 0:
                return self._finish(events)
            self._clear_series_silence(s, t, events)
            self._rounds(s, t, v, codes, None, events)
            s_end, t_end, v_end = s, t, v
        else:
            order = series_time_order(series, cols.ts_us)
            s, t, v, codes, rank = accept_sorted(
                ctx, series[order], cols.ts_us[order], value[order], cols.metric[order]
            )
            if len(s) == 0:
                return self._finish(events)
            first = rank == 0
            self._clear_series_silence(s[first], t[first], events)
            self._rounds(s, t, v, codes, rank, events)
            end = np.ones(len(s), dtype=np.bool_)
            end[:-1] = s[1:] != s[:-1]
            s_end, t_end, v_end = s[end], t[end], v[end]
        # Updated only now: delta_reference compares against values as of the previous batch.
        self._end_batch([(s_end, t_end, v_end)])
        self._device_bookkeeping(lambda: (s, t), events)
        return self._finish(events)

    def _run_starts(self, series: Idx) -> Idx:
        """``run_starts(series)``, remembered for the last immutable series array."""
        last = self._last_starts
        if last is not None and last[0] is series:
            return last[1]
        starts = run_starts(series)
        if immutable(series):
            self._last_starts = (series, starts)
        return starts

    def _finish(self, events: list[AlertEvent]) -> list[AlertEvent]:
        events.sort(key=event_order)
        return events

    def _process_runs(self, runs: list[Run], events: list[AlertEvent]) -> list[AlertEvent]:
        """Evaluate a batch that is a few runs of increasing series, each series in time order.

        Rule state is per series, so each run is a round by itself: no sort, no ranks.
        """
        for run in runs:
            if len(run.s):
                self._clear_series_silence(run.s[run.first], run.t[run.first], events)
                self._rounds(run.s, run.t, run.v, run.codes, None, events)
        # Updated only now: delta_reference compares against values as of the previous batch.
        self._end_batch([(run.s, run.t, run.v) for run in runs])  # later runs hold later ones
        self._device_bookkeeping(
            lambda: (
                np.concatenate([run.s for run in runs]),
                np.concatenate([run.t for run in runs]),
            ),
            events,
        )
        return self._finish(events)

    def tick(self, now_us: int) -> list[AlertEvent]:
        """Evaluate time-driven rules (silence) at ``now_us``, then composites."""
        self._ctx.sync_devices()
        events: list[AlertEvent] = []
        for ev in self._silence:
            ev.tick(now_us, events)
        observed = Observed(tick=now_us)
        for comp in self._composite:
            comp.step(events, observed, events)
        return self._finish(events)

    def learnt_baselines(self) -> list[LearntBaselines]:
        """Per rule comparing with a learnt baseline: each device's baseline and current value."""
        return baselines.learnt(self._ctx, self._signal)

    def active(self, rule_id: str) -> list[str]:
        """Devices on which ``rule_id`` is currently active."""
        activity = device_active(self._ctx, self._by_id[rule_id])
        return [self._ctx.devices.ids[i] for i in np.flatnonzero(activity).tolist()]

    def snapshot(self) -> bytes:
        """All evaluation state as an ``np.savez`` blob."""
        return snapshot.encode(self._ctx)

    @classmethod
    def restore(
        cls,
        rules: Sequence[AnyRule],
        registry: Registry | None,
        blob: bytes,
        *,
        policy: ReadingPolicy | None = None,
    ) -> RuleEngine:
        """An engine continuing from ``snapshot()``; rules changed since start afresh."""
        with snapshot.opened(blob) as (capacity, data):
            engine = cls(rules, registry, window_capacity=capacity, policy=policy)
            snapshot.load(engine._ctx, data)
        every = np.arange(engine._ctx.n_series)
        wounds.rebuild(engine._ctx)
        engine._on_new_series(every)
        for ev in engine._signal:
            ev.rebuild(every)
        for comp in engine._composite:
            comp.rebuild()
        return engine

    # ---- evaluation -------------------------------------------------------------------------

    def _on_new_series(self, ids: Idx) -> None:
        for ev in self._signal:
            ev.on_new_series(ids)

    def _admit(self, new: Idx, cols: Columns, events: list[AlertEvent]) -> None:
        """New series: record new devices' first readings, place series in their wounds."""
        ctx = self._ctx
        first_ts = ctx.dev["first_ts"]
        devs = ctx.series["dev"][new]
        fresh = np.unique(devs[first_ts[devs] == 0])
        retired: list[wounds.Retirement] = []
        if len(fresh):
            sel = first_ts[cols.device] == 0
            first = np.full(ctx.n_dev, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first, cols.device[sel], cols.ts_us[sel])
            retired = wounds.admit(ctx, fresh, first[fresh])
        wounds.assign(ctx, new)
        self._on_new_series(new)
        if retired:
            self._retire(retired, events)

    def _drop_retired(self, cols: Columns, series: Idx) -> tuple[Columns, Idx]:
        """Readings of superseded patches stamped from their retirement on are not evaluated."""
        keep = cols.ts_us < self._ctx.dev["retired_at"][cols.device]
        if keep.all():
            return cols, series
        self._ctx.stats.dropped_retired += len(keep) - int(np.count_nonzero(keep))
        kept = Columns(cols.device[keep], cols.metric[keep], cols.value[keep], cols.ts_us[keep])
        return kept, series[keep]

    def _retire(self, retired: list[wounds.Retirement], events: list[AlertEvent]) -> None:
        """Clear every active alert of superseded patches, at their retirement."""
        ctx = self._ctx
        ids = ctx.devices.ids
        for r in retired:
            d, by = r.device, ids[r.by_device]
            own = ctx.table["series"][d]
            own = own[own >= 0]
            last = int(ctx.series["last_ts"][own].max()) if len(own) else 0
            at = max(r.at_us, last)
            for ev in self._signal:
                s = int(ctx.table["series"][d, ev.code])
                if s >= 0:
                    if ev.state["active"][s]:
                        ctx.n_active[ev.rule.id] -= 1
                        events.append(superseded_event(ev.rule, ids[d], at, by, ev.rule.metric))
                    ev.reset(np.array([s]))
            for sil in self._silence:
                i = d if sil.per_device else int(ctx.table["series"][d, sil.code])
                if i >= 0 and sil.active["active"][i]:
                    sil.active["active"][i] = False
                    ctx.n_active[sil.rule.id] -= 1
                    when = max(at, int(sil.active["raised_at"][i]))
                    events.append(
                        superseded_event(sil.rule, ids[d], when, by, sil.rule.scope.metric)
                    )
            for comp in self._composite:
                comp.reset(d)
                if comp.state["active"][d]:
                    comp.state["active"][d] = False
                    ctx.n_active[comp.rule.id] -= 1
                    when = max(at, int(comp.state["last_at"][d]))
                    comp.state["last_at"][d] = when
                    events.append(superseded_event(comp.rule, ids[d], when, by, None))

    def _end_batch(self, accepted: list[tuple[Idx, I64, F64]]) -> None:
        """Record each series' last accepted reading, and the engine clock."""
        ctx = self._ctx
        for s, t, v in accepted:
            if len(s):
                at = as_index(s)
                ctx.series["last_ts"][at] = t
                ctx.series["last_val"][at] = v
                ctx.clock = max(ctx.clock, int(t.max()))

    def _rounds(
        self, s: Idx, t: I64, v: F64, codes: Idx, rank: Idx | None, events: list[AlertEvent]
    ) -> None:
        """Group readings by (round, metric) with one sort and evaluate each group in order."""
        if not self._rule_metrics:
            return
        width = self._ctx.width
        key = codes if rank is None else rank * width + codes
        grouping = self._grouping(key)
        groups = grouping.series_groups(s)
        t, v = t[grouping.perm], v[grouping.perm]
        bounds = grouping.bounds
        n_rounds = (len(bounds) - 2) // width + 1
        for r in range(n_rounds):
            for code in self._rule_metrics:
                g = r * width + code
                if g + 1 >= len(bounds):
                    break
                lo, hi = int(bounds[g]), int(bounds[g + 1])
                if lo < hi:
                    self._group(code, groups[g], t[lo:hi], v[lo:hi], events)

    def _grouping(self, key: Idx) -> Grouping:
        """The grouping of ``key``: the last one when the key is the same (a fleet reporting
        steadily sends batches of the same shape: one comparison instead of a sort)."""
        last = self._last_grouping
        if last is not None and np.array_equal(last.key, key):
            return last
        self._last_grouping = Grouping.of(key)
        return self._last_grouping

    def _group(self, code: int, s: Idx, t: I64, v: F64, events: list[AlertEvent]) -> None:
        """One metric's readings of one round: push them on the ring, step each rule."""
        ctx = self._ctx
        if ctx.full_ring[code]:
            head = ctx.push(s, t, v)
            for ev, sel in self._scoped(code, s):
                if sel is None:
                    work = ev.prepare(s, t, v, head)
                    if work is not None:
                        ev.step(s, t, v, work, events)
                else:
                    ss, ts, vs = s[sel], t[sel], v[sel]
                    work = ev.prepare(ss, ts, vs, head[sel])
                    if work is not None:
                        ev.step(ss, ts, vs, work, events)
            return
        # Evidence-only ring: push the readings some rule is not at rest at, before any event
        # reads the ring. Every reading of a sustain run still going is such a reading.
        todo: list[tuple[SignalEvaluator, Idx, Prepared]] = []
        for ev, sel in self._scoped(code, s):
            if sel is None:
                work = ev.prepare(s, t, v, None)
                if work is not None:
                    todo.append((ev, work[0], work))
            else:
                work = ev.prepare(s[sel], t[sel], v[sel], None)
                if work is not None:
                    todo.append((ev, sel[work[0]], work))
        if not todo:
            return
        if ctx.ring_metric[code]:
            pushed = (
                todo[0][1]
                if len(todo) == 1
                else np.unique(np.concatenate([item[1] for item in todo]))
            )
            ctx.push(s[pushed], t[pushed], v[pushed])
        for ev, rows, (_, signal, r_on, forced) in todo:
            prepared = (np.arange(len(rows)), signal, r_on, forced)
            ev.step(s[rows], t[rows], v[rows], prepared, events)

    def _scoped(self, code: int, s: Idx) -> Scoped:
        """The metric's rules with the readings in their scope (None: all of them)."""
        ctx = self._ctx
        out: Scoped = []
        dev: Idx | None = None
        for ev in self._by_metric[code]:
            if ev.rule.id in ctx.filtered:
                if dev is None:
                    dev = ctx.series["dev"][s]
                out.append((ev, np.flatnonzero(ctx.scope[ev.rule.id][dev])))
            else:
                out.append((ev, None))
        return out

    def _clear_series_silence(self, s: Idx, t: I64, events: list[AlertEvent]) -> None:
        """A series' first accepted reading in a batch ends its silence alerts."""
        for ev in self._silence:
            ev.clear_series(s, t, events)

    def _device_bookkeeping(
        self, accepted: Callable[[], tuple[Idx, I64]], events: list[AlertEvent]
    ) -> None:
        """Device-wide silence, then composites over the batch's transitions."""
        device_silence = self._device_silence
        ctx = self._ctx
        if device_silence:
            s, t = accepted()
            dev = ctx.series["dev"][s]
            if any(ev.any_active for ev in device_silence):
                dev_first = np.full(ctx.n_dev, np.iinfo(np.int64).max, dtype=np.int64)
                np.minimum.at(dev_first, dev, t)
                for ev in device_silence:
                    ev.clear_devices(dev_first, events)
            np.maximum.at(ctx.dev["last_ts"], dev, t)
        if self._composite:

            def readings() -> tuple[Idx, I64]:
                s, t = accepted()
                dev: Idx = ctx.series["dev"][s]
                return dev, t

            observed = Observed(readings)
            for comp in self._composite:
                comp.step(events, observed, events)
