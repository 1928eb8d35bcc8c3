"""The vectorized engine and the reference agree on random streams, restarts included."""

from __future__ import annotations

import math
import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.alert import AlertEvent
from contract.catalog import METRICS
from contract.reading import Reading
from rules import DeviceInfo, ReferenceEngine, RuleEngine, load_pack
from rules.engine import _group_order
from rules.evaluators.buckets import bucket_statistic
from rules.reference_windows import statistic
from tests.rules.harness import MIN, T0, rules_from

RULES = rules_from("""
rules:
  - {id: th, kind: threshold, severity: warning, source: t, scope: {metric: wound_temp},
     raise: {above: 3, for: 2m}, clear: {below: 1}}
  - {id: conf, kind: threshold, severity: warning, source: t, scope: {metric: wound_temp},
     raise: {above: 2}, clear: {below: 0.5, for: 1m}, confirm: 3m}
  - {id: rep, kind: repeating, severity: warning, source: t, scope: {metric: error_code},
     match: {above: 0}, within: 5m, raise: {at_least: 2}, clear: {at_most: 0}}
  - {id: share, kind: proportion, severity: info, source: t, scope: {metric: error_code},
     match: {above: 1}, window: 6m, resolution: 2m, min_count: 2,
     raise: {at_least: 0.5}, clear: {below: 0.25}}
  - {id: rate, kind: rate, severity: info, source: t, scope: {metric: wound_temp},
     window: 10m, min_span: 2m, raise: {above: 6}, clear: {below: 1, for: 1m}}
  - {id: z, kind: zscore, severity: info, source: t, scope: {metric: skin_temp},
     window: 10m, min_count: 3, raise: {outside: [-2, 2]}, clear: {inside: [-1, 1]}}
  - {id: z_floor, kind: zscore, severity: info, source: t, scope: {metric: wound_temp},
     window: 10m, resolution: 5m, min_count: 3, min_std: 0.5, raise: {outside: [-2, 2]},
     clear: {inside: [-1, 1]}}
  - {id: roll, kind: rolling, severity: info, source: t, scope: {metric: skin_temp},
     statistic: median, window: 6m, resolution: 2m, raise: {above: 3}, clear: {below: 2}}
  - {id: mean, kind: rolling, severity: info, source: t, scope: {metric: wound_temp},
     statistic: mean, window: 4m, resolution: 2m, min_coverage: 1,
     raise: {above: 3.5}, clear: {below: 2, for: 2m}}
  - {id: tp, kind: trend, severity: warning, source: t, scope: {metric: wound_temp},
     window: 4m, prior: 6m, resolution: 2m, per: 1h, exclude: 1m,
     raise: {above: 10}, clear: {below: 5}}
  - {id: tb, kind: trend, severity: warning, source: t, scope: {metric: skin_temp},
     against: baseline, window: 2m, baseline: 4m, resolution: 1m, exclude: 1m,
     raise: {above: 1}, clear: {below: 0.5}}
  - {id: hold, kind: trend, severity: info, source: t, scope: {metric: skin_temp},
     window: 0, prior: 4m, resolution: 1m, history: series, hold_reference: true,
     raise: {below: -1.5, for: 1m}, clear: {above: -0.5}}
  - {id: base, kind: delta_baseline, severity: warning, source: t, scope: {metric: wound_temp},
     baseline: 5m, resolution: 1m, exclude: 2m, raise: {above: 1.5, for: 1m},
     clear: {below: 0.5}}
  - {id: ref, kind: delta_reference, severity: warning, source: t, scope: {metric: skin_temp},
     max_age: 5m, raise: {above: 1}, clear: {below: 0}}
  - {id: learnt, kind: delta_reference, severity: info, source: t, scope: {metric: wound_temp},
     max_age: 5m, offset: {learn: 3m, exclude: 1m, resolution: 1m},
     raise: {above: 1}, clear: {below: 0.5, for: 1m}}
  - {id: bat, kind: battery_low, severity: info, source: t, scope: {kind: patch},
     below: 2, clear_above: 3}
  - {id: sil, kind: silence, severity: warning, source: t, scope: {metric: wound_temp},
     after: 4m}
  - {id: sil_dev, kind: silence, severity: warning, source: t, scope: {kind: patch}, after: 6m}
  - {id: both, kind: composite, severity: critical, source: t, all_of: [th, ref],
     clear_when: none_active}
  - {id: any, kind: composite, severity: info, source: t, any_of: [rep, sil_dev, both]}
  - {id: two, kind: composite, severity: critical, source: t, at_least: 2,
     of: [tp, tb, base, learnt], for: 2m}
""")
REGISTRY = {
    "a": DeviceInfo(
        kind="patch", reference="b", patient="p", wound="left", reference_wound="right"
    ),
    "b": DeviceInfo(kind="patch", reference="a", patient="p", wound="right"),
    "a2": DeviceInfo(kind="patch", patient="p", wound="left", reference_wound="right"),
    "c": DeviceInfo(kind="ultrasound"),
}
DEVICES = ("a", "b", "c", "a2")
METRIC_NAMES = ("wound_temp", "skin_temp", "error_code", "battery")

raw_reading = st.tuples(
    st.sampled_from(DEVICES), st.sampled_from(METRIC_NAMES), st.integers(-3, 4), st.integers(0, 20)
)
step = st.one_of(st.lists(raw_reading, max_size=24), st.integers(0, 10))


def _build(raw_steps: list[list[tuple[str, str, int, int]] | int]) -> list[list[Reading] | int]:
    """Turn drawn steps into readings on a wandering clock (gaps, repeats, going back)."""
    clock = 10
    steps: list[list[Reading] | int] = []
    for raw in raw_steps:
        if isinstance(raw, int):
            steps.append(T0 + (clock + raw) * MIN)
            continue
        batch = []
        for seq, (device, metric, delta, level) in enumerate(raw):
            clock = max(1, clock + delta)
            value = float(level % 3) if metric == "error_code" else level / 4
            batch.append(
                Reading(device, metric, value, METRICS[metric].unit, T0 + clock * MIN, seq)
            )
        steps.append(batch)
    return steps


def _replay(
    steps: list[list[Reading] | int], restart_at: int, capacity: int
) -> tuple[list[AlertEvent], list[AlertEvent]]:
    engine = RuleEngine(RULES, REGISTRY, window_capacity=capacity)
    reference = ReferenceEngine(RULES, REGISTRY, window_capacity=capacity)
    got: list[AlertEvent] = []
    want: list[AlertEvent] = []
    for i, item in enumerate(steps):
        if i == restart_at:
            engine = RuleEngine.restore(RULES, REGISTRY, engine.snapshot())
        if isinstance(item, int):
            got += engine.tick(item)
            want += reference.tick(item)
        else:
            got += engine.process_readings(item)
            want += reference.process(item)
    assert engine.stats == reference.stats
    _assert_same_baselines(engine, reference)
    return got, want


def _assert_same_baselines(engine: RuleEngine, reference: ReferenceEngine) -> None:
    """Every baseline the engine hands out is the reference's learnt value for that device's
    history (its wound's, or its own); and the baseline rules are the ones handing out."""
    by_id = {rule.id: rule for rule in RULES}
    out = engine.learnt_baselines()
    assert {found.rule_id for found in out} == {"tb", "base"}
    for found in out:
        rule = by_id[found.rule_id]
        history = getattr(rule, "history", "series")
        for d, value in zip(found.device.tolist(), found.baseline.tolist(), strict=True):
            owner = reference.signals._owner(rule, engine.devices.ids[d], history)
            assert reference.signals.learnt[(rule.id, owner)].value == value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=20), st.integers(0, 20), st.sampled_from([4, 32]))
def test_engine_matches_reference(
    raw_steps: list[list[tuple[str, str, int, int]] | int], restart_at: int, capacity: int
) -> None:
    got, want = _replay(_build(raw_steps), restart_at, capacity)
    assert got == want


def test_packs_match_reference_on_a_large_random_fleet() -> None:
    rng = random.Random(7)
    rules = load_pack("dressings") + load_pack("equipment")
    patches = [f"p{i}" for i in range(40)]
    registry = {
        p: DeviceInfo(kind="patch", reference=patches[i ^ 1]) for i, p in enumerate(patches)
    }
    machines = [f"m{i}" for i in range(20)]
    level = {
        "wound_ph": (6.5, 8.0),
        "wound_temp": (28.0, 40.0),
        "skin_temp": (27.0, 37.0),
        "exudate": (0.0, 100.0),
        "battery": (0.0, 100.0),
        "mains_voltage": (200.0, 260.0),
        "ng_voltage": (0.0, 3.0),
        "probe_health": (50.0, 100.0),
        "error_code": (0.0, 2.0),
    }
    engine = RuleEngine(rules, registry)
    reference = ReferenceEngine(rules, registry)
    total = 0
    for batch_no in range(120):
        batch = []
        for _ in range(150):
            device = rng.choice(patches + machines)
            metrics = (
                ("wound_ph", "wound_temp", "skin_temp", "exudate", "battery")
                if (device.startswith("p"))
                else ("mains_voltage", "ng_voltage", "probe_health", "error_code")
            )
            metric = rng.choice(metrics)
            lo, hi = level[metric]
            value = (
                float(rng.randint(0, 2))
                if metric == "error_code"
                else (round(rng.uniform(lo, hi) * 4) / 4)
            )
            ts = T0 + (batch_no * 10 + rng.randint(-15, 10)) * MIN
            batch.append(Reading(device, metric, value, METRICS[metric].unit, ts, 0))
        got, want = engine.process_readings(batch), reference.process(batch)
        assert got == want
        total += len(got)
        if batch_no % 10 == 9:
            now = T0 + (batch_no * 10 + 40) * MIN
            assert engine.tick(now) == reference.tick(now)
            engine = RuleEngine.restore(rules, registry, engine.snapshot())
    assert engine.stats == reference.stats
    assert total > 50  # the stream actually exercises the packs


steady_batch = st.tuples(
    st.lists(st.integers(0, 20), min_size=16, max_size=16),  # a level per (device, metric)
    st.integers(0, 3),  # minutes since the last batch
    st.booleans(),  # this batch comes in another order (a new shape)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steady_batch, min_size=1, max_size=25), st.integers(0, 25))
def test_engine_matches_reference_on_batches_of_the_same_shape(
    batches: list[tuple[list[int], int, bool]], restart_at: int
) -> None:
    """A fleet reporting steadily: the same series in the same order batch after batch, which
    the engine recognises (grouping, rows and row runs reused); now and then another order."""
    pairs = [(d, m) for d in DEVICES for m in METRIC_NAMES]
    steps: list[list[Reading] | int] = []
    clock = 10
    for levels, gap, reordered in batches:
        clock += gap
        order = list(range(len(pairs)))
        if reordered:
            random.Random(clock).shuffle(order)
        batch = []
        for i in order:
            (device, metric), level = pairs[i], levels[i]
            value = float(level % 3) if metric == "error_code" else level / 4
            batch.append(Reading(device, metric, value, METRICS[metric].unit, T0 + clock * MIN, 0))
        steps.append(batch)
    got, want = _replay(steps, restart_at, 32)
    assert got == want


far = st.sampled_from([0, 0, 0, 0, 3 * 60, 2 * 24 * 60, 9 * 24 * 60, 10**9])  # minutes ahead
arrival = st.one_of(st.none(), st.integers(0, 40))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.lists(st.tuples(raw_reading, far), max_size=12), arrival), max_size=12),
    st.integers(0, 12),
)
def test_engine_matches_reference_on_readings_stamped_far_ahead(
    raw: list[tuple[list[tuple[tuple[str, str, int, int], int]], int | None]], restart_at: int
) -> None:
    """Out-of-window readings: with and without an arrival time, across a restart."""
    engine = RuleEngine(RULES, REGISTRY)
    reference = ReferenceEngine(RULES, REGISTRY)
    clock = 10
    for i, (batch, now) in enumerate(raw):
        if i == restart_at:
            engine = RuleEngine.restore(RULES, REGISTRY, engine.snapshot())
        readings = []
        for seq, ((device, metric, delta, level), ahead) in enumerate(batch):
            clock = max(1, clock + delta)
            value = float(level % 3) if metric == "error_code" else level / 4
            ts = min(T0 + (clock + ahead) * MIN, 2**62)
            readings.append(Reading(device, metric, value, METRICS[metric].unit, ts, seq))
        now_us = None if now is None else T0 + (clock + now) * MIN
        assert engine.process_readings(readings, now_us) == reference.process(readings, now_us)
    assert engine.stats == reference.stats
    assert engine.clock_us == reference.clock


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=300), st.sampled_from([8, 16, 41]))
def test_group_order_groups_keys_in_increasing_order(values: list[int], bits: int) -> None:
    # Keys of up to 8 and 16 bits take the radix sort, wider ones the 64-bit quicksort.
    key = np.array([v % (1 << bits) for v in values], dtype=np.intp)
    perm = _group_order(key, int(key.max()))
    assert sorted(perm.tolist()) == list(range(len(key)))
    assert np.all(np.diff(key[perm]) >= 0)


bucket_rows = st.integers(1, 6).flatmap(
    lambda width: st.lists(
        st.lists(
            st.lists(st.integers(-8, 8).map(lambda x: x / 4), max_size=3),
            min_size=width,
            max_size=width,
        ),
        min_size=1,
        max_size=8,
    )
)


@settings(max_examples=300, deadline=None)
@given(bucket_rows, st.sampled_from(["median", "mean"]), st.sampled_from([0.0, 0.5, 1.0]))
def test_bucket_statistic_is_the_reference_statistic(
    rows: list[list[list[float]]], kind: str, min_coverage: float
) -> None:
    """Rows of buckets (some empty, some rows full: the full rows' fast median) as the
    vectorised statistic sees them, against the reference's bucket by bucket."""
    sums = np.array([[sum(b) for b in row] for row in rows])
    counts = np.array([[float(len(b)) for b in row] for row in rows])
    got = bucket_statistic(sums, counts, kind, min_coverage)
    for row, value in zip(rows, got.tolist(), strict=True):
        want = statistic(row, kind, min_coverage)
        assert (math.isnan(value) and math.isnan(want)) or math.isclose(value, want)
