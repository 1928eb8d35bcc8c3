"""Windows in time: bucketed counts, smoothed statistics, trends, baselines, wounds, k-of-n.

Also the held-out defects of issue 11: each has a case here (docs/rules.md, "Decisions").
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from contract.alert import AlertEvent, AlertTransition, Severity
from contract.reading import Reading
from rules import AlertBook, DeviceInfo, RuleEngine, check_rule_file, load_rule_file
from rules.registry import load_registry
from tests.rules.harness import at, each, r, rules_from, run, summary

HEAD = "rules:\n"


def _rule(body: str) -> str:
    return HEAD + "  - {source: test, severity: warning, " + body + "}\n"


def test_repeating_counts_over_the_stated_hour_not_the_last_32_readings() -> None:
    rules = rules_from(
        _rule(
            "id: e, kind: repeating, scope: {metric: error_code}, match: {above: 0}, "
            "within: 1h, raise: {at_least: 3}, clear: {at_most: 0}"
        )
    )
    codes = {0: 101.0, 20: 204.0, 40: 317.0}  # three codes 20 minutes apart, zeros between
    readings = [r("m", "error_code", m, codes.get(m, 0.0)) for m in range(0, 130)]
    events = run(rules, [readings])
    # raised at the third code; cleared once its 5-minute bucket [40, 45) has left the hour
    assert summary(events) == [(40, "m", "e", "raised"), (100, "m", "e", "cleared")]


def test_a_two_hour_zscore_at_one_reading_a_minute_sees_two_hours() -> None:
    rules = rules_from(
        _rule(
            "id: z, kind: zscore, scope: {metric: wound_ph}, window: 2h, resolution: 5m, "
            "min_count: 110, raise: {outside: [-4, 4]}, clear: {inside: [-2, 2]}"
        )
    )
    steady = [r("d", "wound_ph", m, 7.0 + (m % 2) * 0.25) for m in range(0, 180)]
    jump = [r("d", "wound_ph", 180, 9.0)]
    events = run(rules, [steady, jump])
    # 110 earlier readings are needed: only a window of (nearly) 2 h at 1/min holds them
    assert summary(events) == [(180, "d", "z", "raised")]


def test_proportion_raises_on_a_noisy_series_where_every_reading_would_not() -> None:
    rules = rules_from(
        _rule(
            "id: p, kind: proportion, scope: {metric: wound_ph}, match: {above: 7.3}, "
            "window: 1h, resolution: 5m, min_count: 30, raise: {at_least: 0.85}, "
            "clear: {below: 0.5}"
        )
    )
    rng = random.Random(4)
    # pH 7.6 with sensor noise: most readings above 7.3, a few below, never all above for long
    values = [round((7.6 + rng.gauss(0, 0.25)) * 4) / 4 for _ in range(120)]
    events = run(rules, [[r("d", "wound_ph", m, v) for m, v in enumerate(values)]])
    assert [e.transition for e in events][:1] == [AlertTransition.RAISED]


def test_rolling_median_ignores_a_single_spike() -> None:
    rules = rules_from(
        _rule(
            "id: m, kind: rolling, scope: {metric: mains_voltage}, statistic: median, "
            "window: 30m, resolution: 10m, raise: {below: 207}, clear: {above: 212}"
        )
    )
    values = [230.0] * 40 + [150.0] + [230.0] * 20 + [195.0] * 40 + [230.0] * 40
    events = run(rules, [[r("u", "mains_voltage", m, v) for m, v in enumerate(values)]])
    # the spike at 40 is one bucket mean of three; the sag from 61 on moves the median once two
    # of the three completed 10-minute buckets are low (at 80); back after two are high (120)
    assert summary(events) == [(80, "u", "m", "raised"), (120, "u", "m", "cleared")]


def test_ten_minute_mean_per_en_50160() -> None:
    rules = rules_from(
        _rule(
            "id: m, kind: rolling, scope: {metric: mains_voltage}, statistic: mean, "
            "window: 10m, resolution: 10m, min_coverage: 1, raise: {outside: [207, 253]}, "
            "clear: {inside: [212, 248]}"
        )
    )
    values = [230.0] * 30 + [193.0] * 30 + [230.0] * 40
    events = run(rules, [[r("u", "mains_voltage", m, v) for m, v in enumerate(values)]])
    assert summary(events) == [(40, "u", "m", "raised"), (70, "u", "m", "cleared")]
    assert events[0].evidence["signal"] == 193.0


def test_trend_of_the_recent_median_against_the_prior_window_held_for_hours() -> None:
    rules = rules_from(
        _rule(
            "id: t, kind: trend, scope: {metric: wound_temp}, window: 6h, prior: 12h, "
            "resolution: 1h, raise: {at_least: 1.0, for: 2h}, clear: {below: 0.5}"
        )
    )
    hours = [(h, 33.0 if h < 20 else 34.5) for h in range(0, 40)]
    readings = [r("d", "wound_temp", h * 60 + k * 10, v) for h, v in hours for k in range(6)]
    events = run(rules, [readings])
    # the 6 h median is 34.5 once 4 of its 6 hourly buckets are warm (at 24 h); held 2 h more
    assert summary(events)[0] == (26 * 60, "d", "t", "raised")


def test_rise_per_day() -> None:
    rules = rules_from(
        _rule(
            "id: t, kind: trend, scope: {metric: wound_ph}, window: 12h, prior: 12h, "
            "resolution: 1h, per: 1d, raise: {at_least: 0.5}, clear: {below: 0.2}"
        )
    )
    readings = [r("d", "wound_ph", h * 60, 7.0 + max(0, h - 24) * 0.04) for h in range(72)]
    events = run(rules, [readings])
    assert summary(events)[0][2:] == ("t", "raised")
    # 0.04/h is 0.96/day: the raise comes once the median difference over 12 h reaches 0.25
    assert 0.5 <= events[0].evidence["signal"] <= 1.0


def test_confirmation_needs_the_condition_again_later_not_continuously() -> None:
    rules = rules_from(
        _rule(
            "id: c, kind: threshold, scope: {metric: skin_temp}, raise: {above: 2.2}, "
            "clear: {below: 1.0, for: 2h}, confirm: 12h"
        )
    )
    # above at 0 h, dips (not cleared: the clear needs 2 h) and is above again at 12 h
    series = [(0, 2.5), (60, 1.5), (6 * 60, 0.5), (7 * 60, 1.6), (12 * 60, 2.4), (13 * 60, 3.0)]
    events = run(rules, each([r("d", "skin_temp", m, v) for m, v in series]))
    assert summary(events) == [(12 * 60, "d", "c", "raised")]
    # a clear that held for its 2 h in between restarts the confirmation
    cleared = [(0, 2.5), (60, 0.5), (4 * 60, 0.5), (12 * 60, 2.4), (13 * 60, 3.0)]
    events = run(rules, each([r("d", "skin_temp", m, v) for m, v in cleared]))
    assert summary(events) == []


def _wounds() -> dict[str, DeviceInfo]:
    return {
        "p1": DeviceInfo(kind="patch", patient="pt", wound="heel"),
        "p2": DeviceInfo(kind="patch", patient="pt", wound="heel"),
    }


def test_a_new_patch_inherits_the_wound_baseline_and_supersedes_the_old_one() -> None:
    text = _rule(
        "id: b, kind: trend, scope: {metric: wound_temp}, against: baseline, window: 2h, "
        "baseline: 12h, resolution: 1h, exclude: 2h, raise: {above: 1.0}, clear: {below: 0.5}"
    ) + (
        "  - {source: t, severity: warning, id: s, kind: silence, "
        "scope: {metric: wound_temp}, after: 30m}\n"
    )
    rules = rules_from(text)
    # patch 1: cooled for the first hours after application (excluded), then 33 for a day
    first = [r("p1", "wound_temp", m, 31.0 if m < 120 else 33.0) for m in range(0, 26 * 60, 10)]
    # patch 2 on the same wound, 40 min after patch 1's last reading: cooled again, then 35
    s2 = 26 * 60 + 30
    second = [
        r("p2", "wound_temp", m, 31.0 if m < s2 + 60 else 35.0) for m in range(s2, 40 * 60, 10)
    ]
    steps: list[list[Reading] | int] = [first, at(s2 - 5), second, at(40 * 60)]
    events = run(rules, steps, _wounds())
    got = summary(events)
    # the old patch went quiet: silence raised, then cleared as superseded by the new patch
    assert (s2 - 5, "p1", "s", "raised") in got
    superseded = [e for e in events if e.evidence.get("reason") == "superseded"]
    assert [(e.device_id, e.rule_id, e.at_us) for e in superseded] == [("p1", "s", at(s2))]
    # the new patch is not blind: right after its exclusion window it compares with the
    # wound's baseline (33, learnt from patch 1), as soon as an hour of it is complete
    raised = [g for g in got if g[1:] == ("p2", "b", "raised")]
    assert raised and s2 + 2 * 60 <= raised[0][0] <= s2 + 3 * 60
    assert events[[e.rule_id for e in events].index("b")].evidence["reference"] == 33.0


def test_contralateral_pair_learns_its_offset_and_clears_on_a_stale_reference() -> None:
    rules = rules_from(
        _rule(
            "id: c, kind: delta_reference, scope: {metric: skin_temp}, max_age: 30m, "
            "offset: {learn: 4h, exclude: 1h, resolution: 1h}, "
            "raise: {above: 2.2}, clear: {below: 1.1}"
        )
    )
    registry = {
        "left": DeviceInfo(kind="patch", patient="pt", wound="left", reference_wound="right"),
        "right": DeviceInfo(kind="patch", patient="pt", wound="right"),
    }
    steps: list[list[Reading]] = []
    for m in range(0, 12 * 60, 10):
        left = 30.0 + 1.5 + (3.0 if m >= 8 * 60 else 0.0)  # normally 1.5 warmer; +3 at 8 h
        steps.append([r("right", "skin_temp", m, 30.0)])
        steps.append([r("left", "skin_temp", m + 1, left)])
    steps.append([r("left", "skin_temp", 12 * 60 + 45, 34.5)])  # reference silent 45 min
    events = run(rules, steps, registry)
    # the normal 1.5 °C offset never raised; the extra 3 °C did; the stale reference cleared it
    assert summary(events) == [(8 * 60 + 1, "left", "c", "raised"), (765, "left", "c", "cleared")]
    assert events[0].evidence["offset"] == 1.5
    assert events[1].evidence["reference_stale"] is True


def test_k_of_n_composite_confirmed_after_holding() -> None:
    text = HEAD
    for rid, metric in (("a", "wound_temp"), ("b", "wound_ph"), ("c", "exudate")):
        text += (
            f"  - {{source: t, severity: info, id: {rid}, kind: threshold, "
            f"scope: {{metric: {metric}}}, raise: {{above: 10}}, clear: {{below: 5}}}}\n"
        )
    text += (
        "  - {source: t, severity: critical, id: two, kind: composite, at_least: 2, "
        "of: [a, b, c], for: 30m}\n"
    )
    steps = [
        [r("d", "wound_temp", 0, 11)],
        [r("d", "wound_ph", 10, 11)],  # 2 of 3 from 10 min
        [r("d", "exudate", 20, 1)],
        [r("d", "exudate", 39, 1)],
        [r("d", "exudate", 41, 1)],  # first reading at or after 10 + 30 min
        [r("d", "wound_temp", 50, 1)],  # 1 of 3: below k, clears
    ]
    got = [g for g in summary(run(rules_from(text), steps)) if g[2] == "two"]
    assert got == [(41, "d", "two", "raised"), (50, "d", "two", "cleared")]


def test_composites_do_not_depend_on_how_a_time_ordered_stream_is_batched() -> None:
    text = HEAD + (
        "  - {source: t, severity: info, id: a, kind: threshold, scope: {metric: wound_temp}, "
        "raise: {above: 3}, clear: {below: 2}}\n"
        "  - {source: t, severity: info, id: b, kind: threshold, scope: {metric: wound_ph}, "
        "raise: {above: 3}, clear: {below: 2}}\n"
        "  - {source: t, severity: critical, id: ab, kind: composite, all_of: [a, b]}\n"
        "  - {source: t, severity: critical, id: k, kind: composite, at_least: 1, of: [a, b], "
        "for: 3m}\n"
    )
    rules = rules_from(text)
    rng = random.Random(11)
    stream = [
        r("d", metric, m, float(rng.randint(0, 5)))
        for m in range(200)
        for metric in ("wound_temp", "wound_ph")
    ]
    whole = run(rules, [stream])
    for _ in range(20):
        # cut between timestamps: a batch holds every reading of the device up to its newest
        cuts = sorted(rng.sample(range(2, len(stream), 2), 8))
        parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert run(rules, parts) == whole
    # a combination that holds only in the middle of one batch is seen
    assert any(e.rule_id == "ab" for e in whole)


def test_invalid_values_are_not_readings() -> None:
    rules = rules_from(
        _rule(
            "id: z, kind: zscore, scope: {metric: wound_ph}, window: 30m, min_count: 3, "
            "raise: {outside: [-3, 3]}, clear: {inside: [-1, 1]}"
        )
    )
    values = [7.0, 7.25, float("nan"), float("inf"), 7.0, 7.25, 7.0]
    engine = RuleEngine(rules)
    events = engine.process_readings([r("d", "wound_ph", m, v) for m, v in enumerate(values)])
    assert events == []
    assert engine.stats.dropped_invalid == 2 and engine.stats.accepted == 5


def test_check_refuses_exactly_what_the_engine_refuses(tmp_path: Path) -> None:
    bodies = [
        "id: e, kind: repeating, scope: {metric: error_code}, match: {above: 0}, within: 1h, "
        "raise: {at_least: 100}, clear: {at_most: 0}",  # above the old 32-slot ring: fine now
        "id: z, kind: zscore, scope: {metric: wound_ph}, window: 7m, "
        "raise: {above: 3}, clear: {below: 1}",  # no standard resolution tiles 7 min in <= 48
        "id: t, kind: trend, scope: {metric: wound_ph}, window: 1h, prior: 90m, resolution: 1h, "
        "raise: {above: 3}, clear: {below: 1}",  # 90 min is not whole hours
        "id: r, kind: rolling, scope: {metric: wound_ph}, window: 30d, resolution: 1m, "
        "raise: {above: 3}, clear: {below: 1}",  # too many buckets
    ]
    for i, body in enumerate(bodies):
        path = tmp_path / f"r{i}.yaml"
        path.write_text(_rule(body))
        problems = check_rule_file(path)
        try:
            RuleEngine(load_rule_file(path))
            engine_ok = True
        except ValueError:
            engine_ok = False
        assert engine_ok == (problems == []), (body, problems)
    assert check_rule_file(tmp_path / "r0.yaml") == []


def _event(severity: Severity, transition: AlertTransition, minute: float) -> AlertEvent:
    return AlertEvent(
        device_id="d",
        rule_id="x",
        severity=severity,
        transition=transition,
        at_us=at(minute),
        evidence={},
    )


def test_book_escalates_a_higher_severity_raise_and_never_clears_before_the_raise() -> None:
    book = AlertBook()
    raised = _event(Severity.WARNING, AlertTransition.RAISED, 10)
    assert book.apply([raised]) == [raised]
    assert book.apply([_event(Severity.INFO, AlertTransition.RAISED, 11)]) == []
    higher = _event(Severity.CRITICAL, AlertTransition.RAISED, 12)
    assert book.apply([higher]) == [higher]
    alert = book.get("d", "x")
    assert alert is not None
    assert alert.severity is Severity.CRITICAL and alert.raised_at_us == at(10)
    (cleared,) = book.apply([_event(Severity.CRITICAL, AlertTransition.CLEARED, 5)])
    assert cleared.at_us == at(10)


def test_silence_composite_clears_at_or_after_its_raise() -> None:
    rules = rules_from(
        _rule("id: q, kind: silence, scope: {metric: wound_temp}, after: 30m")
        + "  - {source: t, severity: critical, id: c, kind: composite, any_of: [q]}\n"
    )
    steps: list[list[Reading] | int] = [
        [r("d", "wound_temp", 0, 33)],
        at(40),
        [r("d", "wound_temp", 20, 33)],  # buffered: stamped before the tick that raised
    ]
    got = summary(run(rules, steps))
    assert got == [
        (40, "d", "q", "raised"),  # the tick
        (40, "d", "c", "raised"),
        (40, "d", "q", "cleared"),  # the buffered reading: at the raise, not at 20
        (40, "d", "c", "cleared"),
    ]


@pytest.mark.parametrize("capacity", [4, 32])
def test_engine_and_reference_agree_on_a_wound_with_dressing_changes(capacity: int) -> None:
    text = _rule(
        "id: b, kind: delta_baseline, scope: {metric: wound_temp}, baseline: 3h, "
        "resolution: 1h, exclude: 1h, raise: {above: 1.0, for: 20m}, clear: {below: 0.5}"
    )
    registry = {f"p{i}": DeviceInfo(kind="patch", patient="pt", wound="heel") for i in range(1, 5)}
    rng = random.Random(2)
    steps: list[list[Reading] | int] = []
    for i in range(1, 5):
        start = (i - 1) * 8 * 60
        batch = [
            r(f"p{i}", "wound_temp", m, 33.0 + rng.choice([0.0, 0.25, 1.5]))
            for m in range(start, start + 8 * 60, 15)
        ]
        steps += [batch[:10], batch[10:], start + 8 * 60]
    run(rules_from(text), steps, registry, capacity)


def test_registry_names_patient_wound_and_reference_wound(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(
        "p1: {kind: patch, patient: pt-7, wound: left-heel, reference_wound: right-heel}\n"
        "p2: {kind: patch, patient: pt-7, wound: right-heel}\n"
    )
    registry = load_registry(path)
    assert registry["p1"].wound_key == "pt-7\x1fleft-heel"
    assert registry["p2"].wound_key == "pt-7\x1fright-heel"
    assert registry["p1"].reference_wound == "right-heel"
    assert DeviceInfo(kind="patch").wound_key is None
