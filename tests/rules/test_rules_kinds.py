"""Each rule kind on hand-made series with exact raise and clear times."""

from __future__ import annotations

import pytest

from contract.reading import Reading
from rules import DeviceInfo
from tests.rules.harness import at, each, r, rules_from, run, summary

HEAD = "rules:\n"


def _rule(body: str) -> str:
    return HEAD + "  - {source: test, severity: warning, " + body + "}\n"


def test_threshold_raises_and_clears_with_hysteresis() -> None:
    rules = rules_from(
        _rule(
            "id: t, kind: threshold, scope: {metric: exudate}, "
            "raise: {above: 10}, clear: {below: 5}"
        )
    )
    values = [1, 11, 8, 4, 12]
    events = run(rules, each([r("d", "exudate", m, v) for m, v in enumerate(values)]))
    assert summary(events) == [
        (1, "d", "t", "raised"),
        (3, "d", "t", "cleared"),
        (4, "d", "t", "raised"),
    ]


def test_sustained_needs_an_unbroken_run() -> None:
    rules = rules_from(
        _rule(
            "id: s, kind: sustained, scope: {metric: wound_ph}, "
            "raise: {above: 7.3, for: 3m}, clear: {below: 7.0, for: 2m}"
        )
    )
    values = [7.5, 7.5, 7.2, 7.5, 7.5, 7.5, 7.5, 6.9, 6.9, 7.1, 6.9, 6.9, 6.9]
    events = run(rules, [[r("d", "wound_ph", m, v) for m, v in enumerate(values)]])
    # the run restarts at minute 3 after the dip at 2; clear needs 2 min of < 7.0 unbroken
    assert summary(events) == [(6, "d", "s", "raised"), (12, "d", "s", "cleared")]


def test_repeating_counts_matches_inside_the_window() -> None:
    rules = rules_from(
        _rule(
            "id: e, kind: repeating, scope: {metric: error_code}, "
            "match: {above: 0}, within: 10m, raise: {at_least: 3}, "
            "clear: {at_most: 0}"
        )
    )
    series = [(0, 1), (2, 0), (4, 1), (8, 1), (9, 0), (12, 0), (15, 0), (19, 0)]
    events = run(rules, each([r("m", "error_code", m, v) for m, v in series]))
    assert summary(events) == [(8, "m", "e", "raised"), (19, "m", "e", "cleared")]


def test_rate_of_change_per_hour() -> None:
    rules = rules_from(
        _rule(
            "id: p, kind: rate, scope: {metric: probe_health}, window: 60m, "
            "raise: {below: -10}, clear: {above: -2}"
        )
    )
    series = [(0, 100), (10, 100), (20, 95), (30, 95), (90, 95), (100, 95)]
    events = run(rules, each([r("m", "probe_health", m, v) for m, v in series]))
    # -15/h at 20; at 90 only one reading is inside the window (no rate); 0/h at 100
    assert summary(events) == [(20, "m", "p", "raised"), (100, "m", "p", "cleared")]
    assert events[0].evidence["signal"] == -15.0
    assert events[0].evidence["window"] == [[at(0), 100.0], [at(10), 100.0], [at(20), 95.0]]


def test_zscore_against_earlier_readings() -> None:
    rules = rules_from(
        _rule(
            "id: z, kind: zscore, scope: {metric: wound_ph}, window: 60m, "
            "min_count: 3, raise: {outside: [-3, 3]}, "
            "clear: {inside: [-1, 1]}"
        )
    )
    values = [7.0, 7.25, 7.0, 7.25, 9.5, 7.125]
    events = run(rules, each([r("d", "wound_ph", m, v) for m, v in enumerate(values)]))
    assert summary(events) == [(4, "d", "z", "raised"), (5, "d", "z", "cleared")]
    assert events[0].evidence["signal"] == pytest.approx(19.0)


def test_delta_against_own_baseline_median() -> None:
    rules = rules_from(
        _rule(
            "id: b, kind: delta_baseline, scope: {metric: wound_temp}, "
            "baseline: 60m, resolution: 10m, raise: {above: 2}, clear: {below: 1}"
        )
    )
    series = [(0, 33), (10, 40), (30, 34), (50, 33.5), (60, 36), (70, 34.5)]
    events = run(rules, each([r("d", "wound_temp", m, v) for m, v in series]))
    # baseline = median of the 10-minute means (33, 40, 34, 33.5) = 33.75, 4 of 6 buckets
    # filled; 40 during learning never raises
    assert summary(events) == [(60, "d", "b", "raised"), (70, "d", "b", "cleared")]
    assert events[0].evidence["baseline"] == 33.75


def test_delta_against_reference_device_uses_previous_batches() -> None:
    rules = rules_from(
        _rule(
            "id: c, kind: delta_reference, scope: {metric: skin_temp}, "
            "max_age: 30m, raise: {above: 2.2}, clear: {below: 1.1}"
        )
    )
    registry = {"left": DeviceInfo(kind="patch", reference="right")}
    steps = [
        [r("right", "skin_temp", 0, 33.0)],
        [r("left", "skin_temp", 1, 35.5)],  # 2.5 over the reference: raise
        [r("left", "skin_temp", 2, 34.5), r("right", "skin_temp", 2, 40.0)],  # vs 33.0
        [r("left", "skin_temp", 3, 34.0)],  # now vs 40.0: -6, clear
        [r("left", "skin_temp", 100, 45.0)],  # reference 98 min old: no signal
    ]
    events = run(rules, steps, registry)
    assert summary(events) == [(1, "left", "c", "raised"), (3, "left", "c", "cleared")]
    assert events[0].evidence["reference_device"] == "right"
    assert events[0].evidence["reference_value"] == 33.0


def test_rule_references_override_the_registry() -> None:
    rules = rules_from(
        _rule(
            "id: c, kind: delta_reference, scope: {metric: skin_temp}, "
            "references: {left: other}, raise: {above: 2}, clear: {below: 1}"
        )
    )
    registry = {"left": DeviceInfo(reference="right")}
    steps = [
        [r("right", "skin_temp", 0, 20.0), r("other", "skin_temp", 0, 33.0)],
        [r("left", "skin_temp", 1, 34.0)],
        [r("left", "skin_temp", 2, 36.0)],
    ]
    assert summary(run(rules, steps, registry)) == [(2, "left", "c", "raised")]


def test_silence_raises_on_tick_and_clears_on_data() -> None:
    rules = rules_from(
        _rule("id: q, kind: silence, scope: {metric: wound_temp}, after: 30m")
        + "  - {source: t, severity: info, id: dev, kind: silence, after: 45m}\n"
    )
    steps: list[list[Reading] | int] = [
        [r("d", "wound_temp", 0, 33), r("d", "battery", 10, 80)],
        at(29),
        at(30),
        at(54),
        at(55),
        [r("d", "battery", 40, 80)],
        at(80),
        [r("d", "wound_temp", 81, 33)],
    ]
    assert summary(run(rules, steps)) == [
        (30, "d", "q", "raised"),
        (55, "d", "dev", "raised"),
        # the battery reading stamped 40 arrived after the tick at 55 raised the alert: the
        # clear is stamped at the raise, never before it
        (55, "d", "dev", "cleared"),
        (81, "d", "q", "cleared"),
    ]


def test_battery_low_is_threshold_sugar() -> None:
    rules = rules_from(_rule("id: bat, kind: battery_low, below: 20, clear_above: 30"))
    values = [25, 19, 25, 31, 10]
    events = run(rules, each([r("d", "battery", m, v) for m, v in enumerate(values)]))
    assert summary(events) == [
        (1, "d", "bat", "raised"),
        (3, "d", "bat", "cleared"),
        (4, "d", "bat", "raised"),
    ]
    assert events[0].evidence["raise"] == {"below": 20.0, "for": 0}


def test_composite_all_of_with_hysteresis() -> None:
    text = (
        _rule(
            "id: a, kind: threshold, scope: {metric: wound_ph}, "
            "raise: {above: 7.3}, clear: {below: 7.0}"
        )
        + "  - {source: t, severity: info, id: b, kind: threshold, "
        "scope: {metric: wound_temp}, raise: {above: 36}, clear: {below: 35}}\n"
        + "  - {source: t, severity: critical, id: both, kind: composite, "
        "all_of: [a, b], clear_when: none_active}\n"
        + "  - {source: t, severity: info, id: either, kind: composite, any_of: [a, b]}\n"
    )
    steps = [
        [r("d", "wound_ph", 0, 7.5)],
        [r("d", "wound_temp", 1, 37), r("d", "wound_ph", 2, 7.5)],
        [r("d", "wound_temp", 3, 34)],
        [r("d", "wound_ph", 4, 6.5)],
    ]
    assert summary(run(rules_from(text), steps)) == [
        (0, "d", "a", "raised"),
        (0, "d", "either", "raised"),
        (1, "d", "b", "raised"),
        (1, "d", "both", "raised"),  # at the transition that completed it, not the batch's end
        (3, "d", "b", "cleared"),
        (4, "d", "a", "cleared"),
        (4, "d", "both", "cleared"),
        (4, "d", "either", "cleared"),
    ]


def test_scope_filters_use_the_registry() -> None:
    rules = rules_from(
        _rule(
            "id: t, kind: threshold, scope: {metric: exudate, kind: patch, "
            "site: [ward-7]}, raise: {above: 10}, clear: {below: 5}"
        )
    )
    registry = {
        "in": DeviceInfo(kind="patch", site="ward-7"),
        "elsewhere": DeviceInfo(kind="patch", site="ward-8"),
    }
    batch = [r(d, "exudate", 0, 50) for d in ("in", "elsewhere", "unregistered")]
    assert summary(run(rules, [batch], registry)) == [(0, "in", "t", "raised")]


def test_events_carry_evidence_and_the_disclaimer() -> None:
    rules = rules_from(
        HEAD + "  - {source: 'Gethin 2007', default: true, severity: warning, "
        "id: s, kind: sustained, scope: {metric: wound_ph}, "
        "raise: {above: 7.3, for: 2m}, clear: {below: 7.0}}\n"
    )
    events = run(rules, [[r("d", "wound_ph", m, 7.5) for m in range(4)]])
    (raised,) = events
    assert raised.evidence["window"] == [[at(0), 7.5], [at(1), 7.5], [at(2), 7.5]]
    assert raised.evidence["raise"] == {"above": 7.3, "for": 120_000_000}
    assert raised.evidence["source"] == "Gethin 2007"
    assert "not a diagnosis" in raised.evidence["note"]
