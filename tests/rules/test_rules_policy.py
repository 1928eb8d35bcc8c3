"""The late/duplicate reading policy, columnar input and snapshot/restore."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.reading import Reading
from rules import AlertBook, DeviceInfo, RuleEngine, columns_from_readings, load_pack
from rules.columns import METRIC_NAMES, Columns
from rules.policy import ReadingPolicy, once_order
from tests.rules.harness import MIN, at, each, r, rules_from, run, summary

RULES = rules_from("""
rules:
  - {id: t, kind: sustained, severity: warning, source: s, scope: {metric: exudate},
     raise: {above: 10, for: 2m}, clear: {below: 5}}
""")


def test_late_and_duplicate_readings_are_dropped_and_counted() -> None:
    engine = RuleEngine(RULES)
    engine.process_readings(
        [r("d", "exudate", 5, 20), r("d", "exudate", 3, 20), r("d", "exudate", 5, 99)]
    )  # in-batch: sorted; repeat of 5 dropped
    engine.process_readings(
        [r("d", "exudate", 4, 20), r("d", "exudate", 5, 20), r("d", "exudate", 6, 20)]
    )
    assert (engine.stats.accepted, engine.stats.dropped_late, engine.stats.dropped_duplicate) == (
        3,
        1,
        2,
    )


def test_in_batch_order_does_not_matter() -> None:
    readings = [r("d", "exudate", m, 20) for m in range(5)]
    assert summary(run(RULES, [readings[::-1]])) == summary(run(RULES, [readings]))
    assert summary(run(RULES, [readings])) == [(2, "d", "t", "raised")]


def test_late_reading_cannot_rewrite_history() -> None:
    steps = [
        [r("d", "exudate", 0, 20)],
        [r("d", "exudate", 3, 1)],
        [r("d", "exudate", 2, 20)],
        [r("d", "exudate", 4, 20)],
    ]
    assert summary(run(RULES, steps)) == []


def test_columns_from_readings_interns_devices() -> None:
    engine = RuleEngine(RULES)
    cols = columns_from_readings(
        [r("x", "exudate", 0, 1), r("y", "battery", 1, 2), r("x", "exudate", 2, 3)], engine.devices
    )
    assert cols.device.tolist() == [0, 1, 0]
    assert [METRIC_NAMES[m] for m in cols.metric.tolist()] == ["exudate", "battery", "exudate"]
    assert len(cols) == 3
    assert engine.process(cols) == []


def test_process_accepts_prebuilt_columns() -> None:
    engine = RuleEngine(RULES)
    dev = np.array([engine.devices.intern("d")] * 3, dtype=np.intp)
    metric = np.full(3, METRIC_NAMES.index("exudate"), dtype=np.intp)
    ts = np.array([r("d", "exudate", m, 0).ts_us for m in range(3)], dtype=np.int64)
    events = engine.process(Columns(dev, metric, np.full(3, 20.0), ts))
    assert [(e.device_id, e.transition.value) for e in events] == [("d", "raised")]


def test_unknown_metric_is_rejected() -> None:
    engine = RuleEngine(RULES)
    bad = r("d", "exudate", 0, 1).__class__("d", "nope", 1.0, "x", 5, 0)
    with pytest.raises(ValueError, match="unknown metric"):
        engine.columns([bad])


@pytest.mark.parametrize("cut", range(1, 9))
def test_restart_mid_stream_gives_the_same_alerts(cut: int) -> None:
    steps = each(
        [r("d", "exudate", m, v) for m, v in enumerate([20, 20, 20, 1, 20, 20, 20, 20, 2])]
    )
    plain = RuleEngine(RULES)
    expected = [e for s in steps for e in plain.process_readings(s)]
    engine = RuleEngine(RULES)
    got = [e for s in steps[:cut] for e in engine.process_readings(s)]
    engine = RuleEngine.restore(RULES, None, engine.snapshot())
    got += [e for s in steps[cut:] for e in engine.process_readings(s)]
    assert got == expected
    assert engine.stats == plain.stats


def test_restore_with_a_changed_rule_starts_that_rule_afresh() -> None:
    engine = RuleEngine(RULES)
    engine.process_readings([r("d", "exudate", m, 20) for m in range(3)])
    assert engine.active("t") == ["d"]
    changed = rules_from("""
rules:
  - {id: t, kind: sustained, severity: warning, source: s, scope: {metric: exudate},
     raise: {above: 11, for: 2m}, clear: {below: 5}}
""")
    restored = RuleEngine.restore(changed, None, engine.snapshot())
    assert restored.active("t") == []
    assert RuleEngine.restore(RULES, None, engine.snapshot()).active("t") == ["d"]


def test_alert_book_lifecycle() -> None:
    book = AlertBook()
    engine = RuleEngine(RULES)
    raised = engine.process_readings([r("d", "exudate", m, 20) for m in range(3)])
    assert book.apply(raised) == raised
    assert book.apply(raised) == []  # one active alert per (device, rule)
    alert = book.get("d", "t")
    assert alert is not None and not alert.acknowledged
    assert alert.evidence["window"]
    ack = book.acknowledge("d", "t", at_us=raised[0].at_us + 1, by="nurse-7")
    assert ack.transition.value == "acknowledged"
    acked = book.get("d", "t")
    assert acked is not None and acked.acknowledged_by == "nurse-7"
    with pytest.raises(ValueError, match="already acknowledged"):
        book.acknowledge("d", "t", at_us=raised[0].at_us + 2)
    cleared = engine.process_readings([r("d", "exudate", 5, 1)])
    assert book.apply(cleared) == cleared
    assert len(book) == 0 and book.active() == []
    with pytest.raises(KeyError):
        book.acknowledge("d", "t", at_us=raised[0].at_us + 3)


def test_restore_survives_a_catalog_reorder(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RuleEngine(RULES)
    engine.process_readings([r("d", "exudate", m, 20) for m in range(3)])
    blob = engine.snapshot()
    import rules.engine as engine_module

    names = ("battery", *(n for n in METRIC_NAMES if n != "battery"))
    monkeypatch.setattr(engine_module, "METRIC_CODES", {n: i for i, n in enumerate(names)})
    restored = RuleEngine.restore(RULES, None, blob)
    assert restored.active("t") == ["d"]
    cleared = restored.process(
        Columns(
            np.array([restored.devices.intern("d")], dtype=np.intp),
            np.array([names.index("exudate")], dtype=np.intp),
            np.array([1.0]),
            np.array([r("d", "exudate", 5, 1).ts_us], dtype=np.int64),
        )
    )
    assert [e.transition.value for e in cleared] == ["cleared"]


YEAR_3000_US = 32_503_680_000_000_000  # 3000-01-01T00:00:00Z


@pytest.mark.parametrize("bad_ts", [YEAR_3000_US, 2**62], ids=["year-3000", "2^62"])
def test_a_far_future_reading_does_not_switch_a_series_off(bad_ts: int) -> None:
    mains = load_pack("equipment")
    steady = [r("us-1", "mains_voltage", m, 230.0) for m in range(5)]
    bogus = Reading("us-1", "mains_voltage", 230.0, "V", bad_ts, 99)
    sag = [r("us-1", "mains_voltage", m, 190.0) for m in range(5, 25)]
    events = run(mains, [steady, [bogus], *each(sag)])
    # the undervoltage event at once; the 10-minute mean once [10, 20) has closed (EN 50160)
    assert summary(events) == [
        (5, "us-1", "equipment.mains.undervoltage_event", "raised"),
        (20, "us-1", "equipment.mains.out_of_band", "raised"),
    ]
    engine = RuleEngine(mains)
    engine.process_readings([*steady, bogus])
    assert engine.stats.dropped_out_of_window == 1
    assert engine.clock_us == steady[-1].ts_us
    assert engine.tick(engine.clock_us) == []  # the data clock did not jump either


def test_a_fresh_engine_drops_a_far_future_first_reading() -> None:
    engine = RuleEngine(load_pack("equipment"))
    assert engine.process_readings([Reading("us-1", "mains_voltage", 190.0, "V", 2**62, 0)]) == []
    assert (engine.stats.accepted, engine.stats.dropped_out_of_window) == (0, 1)


def test_the_window_follows_the_arrival_time_when_it_is_known() -> None:
    policy = ReadingPolicy(max_skew_us=5 * MIN)
    engine = RuleEngine(RULES, policy=policy)
    now = at(10)
    ahead = [r("d", "exudate", 14, 20), r("d", "exudate", 16, 20)]  # 4 and 6 min ahead
    engine.process_readings(ahead, now_us=now)
    assert (engine.stats.accepted, engine.stats.dropped_out_of_window) == (1, 1)
    # Without an arrival time the clock is the newest accepted reading (+ max_jump, 7 days).
    engine.process_readings([r("d", "exudate", 14 + 8 * 24 * 60, 20)])
    engine.process_readings([r("d", "exudate", 14 + 6 * 24 * 60, 20)])
    assert (engine.stats.accepted, engine.stats.dropped_out_of_window) == (2, 2)
    restored = RuleEngine.restore(RULES, None, engine.snapshot())
    assert restored.clock_us == engine.clock_us and restored.stats == engine.stats


def test_a_far_past_reading_is_late_and_changes_nothing() -> None:
    steps = [[r("d", "exudate", m, 20) for m in range(3)], [r("d", "exudate", -10_000, 1)]]
    events = run(RULES, steps)
    assert summary(events) == [(2, "d", "t", "raised")]


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 3_000))
def test_once_order_puts_distinct_series_in_increasing_order(
    data: st.DataObject, n_series: int
) -> None:
    """Placed (a batch as large as a share of the fleet) or sorted (a small one), alike."""
    series = np.array(
        data.draw(st.lists(st.integers(0, n_series - 1), unique=True, max_size=n_series)),
        dtype=np.intp,
    )
    order = once_order(series, n_series)
    assert sorted(order.tolist()) == list(range(len(series)))
    assert series[order].tolist() == sorted(series.tolist())


def test_a_fleet_heard_in_another_order_raises_what_it_raises_in_order() -> None:
    """Rows of distinct series in any order: the same alerts as in series order."""
    rules = load_pack("dressings")
    devices = [f"p{i}" for i in range(400)]  # > 64 runs of increasing series: not run by run
    registry = {d: DeviceInfo(kind="patch") for d in devices}
    rng = np.random.default_rng(5)
    in_order, shuffled = RuleEngine(rules, registry), RuleEngine(rules, registry)
    raised = 0
    for k in range(4 * 32):  # 15-minute readings: a day's baseline, then the wounds warm
        warm = np.where(np.arange(len(devices)) % 2 == 0, 2.5, 0.0) if k > 4 * 28 else 0.0
        temp = 33.0 + warm + rng.normal(0, 0.1, len(devices)).round(2)
        batch = [
            Reading(d, "wound_temp", float(t), "degC", at(k * 15), 0)
            for d, t in zip(devices, temp, strict=True)
        ]
        heard = [batch[i] for i in rng.permutation(len(batch))]
        want = summary(in_order.process_readings(batch))
        assert summary(shuffled.process_readings(heard)) == want
        raised += sum(1 for e in want if e[3] == "raised")
    assert in_order.stats == shuffled.stats
    assert raised >= 20  # the warm wounds raised
