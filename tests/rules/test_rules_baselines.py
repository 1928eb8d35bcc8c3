"""Learnt wound baselines out of the engine and into the readings store, as they change.

The dressing pack's ``dressing.temp.rise`` compares the 1 h median of 15-minute means with the
wound's baseline (median of 15-minute means over 24 h, after a 2 h exclusion): the engine hands
both out per device, the export writes only what changed, and the runtime writes them to a real
store (SQLite here; the storage contract runs the table on both backends).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contract import WoundBaseline
from infra.telemetry import open_store
from rules import DeviceInfo, RuleEngine, load_pack, parse_rules
from rules.baselines import BaselineExport
from rules.runtime import RuleRuntime, RuntimeSettings
from tests.rules.harness import at, r

RULE = "dressing.temp.rise"
REGISTRY = {"patch-1": DeviceInfo(kind="patch"), "patch-2": DeviceInfo(kind="patch")}


def _hours(device: str, first_h: float, last_h: float, value: float) -> list:  # type: ignore[type-arg]
    """wound_temp every 5 minutes from hour ``first_h`` (inclusive) to ``last_h`` (exclusive)."""
    return [
        r(device, "wound_temp", 60 * first_h + 5 * k, value)
        for k in range(round((last_h - first_h) * 12))
    ]


def _temp_rise(engine: RuleEngine) -> dict[str, tuple[float, float]]:
    (found,) = [b for b in engine.learnt_baselines() if b.rule_id == RULE]
    ids = engine.devices.ids
    return {
        ids[d]: (b, c)
        for d, b, c in zip(
            found.device.tolist(), found.baseline.tolist(), found.current.tolist(), strict=True
        )
    }


def test_the_engine_hands_out_each_wound_baseline_and_the_value_compared_with_it() -> None:
    engine = RuleEngine(load_pack("dressings"), REGISTRY)
    engine.process_readings(_hours("patch-1", 0, 20, 33.0))
    assert _temp_rise(engine) == {}  # 2 h excluded, then 24 h to learn: nothing yet
    engine.process_readings(_hours("patch-1", 20, 27, 33.0) + _hours("patch-2", 0, 1, 34.0))
    learnt = _temp_rise(engine)
    assert list(learnt) == ["patch-1"]  # patch-2 is still inside its exclusion window
    assert learnt["patch-1"] == (33.0, 33.0)
    engine.process_readings(_hours("patch-1", 27, 29, 33.8))
    base, current = _temp_rise(engine)["patch-1"]
    assert base == 33.0 and current == pytest.approx(33.8)  # the 1 h median of 15-min means


def test_a_rule_without_a_learnt_baseline_hands_out_nothing() -> None:
    rules = parse_rules(
        "rules:\n  - {id: hot, kind: threshold, severity: warning, scope: {metric: wound_temp}, "
        "raise: {above: 40}, clear: {below: 39}, source: test}\n",
        "test.yaml",
    )
    engine = RuleEngine(rules, REGISTRY)
    engine.process_readings(_hours("patch-1", 0, 30, 33.0))
    assert engine.learnt_baselines() == []


def test_the_export_writes_what_changed_only() -> None:
    engine = RuleEngine(load_pack("dressings"), REGISTRY)
    engine.process_readings(_hours("patch-1", 0, 27, 33.0))
    export = BaselineExport()
    ids = engine.devices.ids
    first = export.changed(engine.learnt_baselines(), ids, 0)
    assert [(b.device_id, b.rule_id, b.baseline, b.current) for b in first] == [
        ("patch-1", RULE, 33.0, 33.0)
    ]
    assert first[0].at_us == at(60 * 27 - 5)  # the newest reading behind it
    # Not marked written: offered again. Marked: not, until a value moves.
    assert export.changed(engine.learnt_baselines(), ids, 0) == first
    export.written(first, engine.devices.get)
    assert export.changed(engine.learnt_baselines(), ids, 0) == []
    engine.process_readings(_hours("patch-1", 27, 28, 34.0))
    (moved,) = export.changed(engine.learnt_baselines(), ids, 0)
    assert moved.baseline == 33.0 and moved.current is not None and moved.current > 33.0
    assert len(BaselineExport().changed(engine.learnt_baselines(), ids, 0)) == 1


def test_an_unchanged_row_is_rewritten_once_a_day_of_readings_and_a_silent_one_is_not() -> None:
    """So that the store can prune the rows of patches gone silent by their stamp alone
    ([retention] baselines_days), without pruning a steady patch's row."""
    engine = RuleEngine(load_pack("dressings"), REGISTRY)
    engine.process_readings(_hours("patch-1", 0, 27, 33.0) + _hours("patch-2", 0, 27, 33.0))
    export = BaselineExport()
    ids = engine.devices.ids
    export.written(export.changed(engine.learnt_baselines(), ids, 0), engine.devices.get)
    # patch-1 steady for 23 h more: its values do not move, nothing to write yet
    engine.process_readings(_hours("patch-1", 27, 50, 33.0))
    assert export.changed(engine.learnt_baselines(), ids, 0) == []
    engine.process_readings(_hours("patch-1", 50, 51, 33.0))  # a day of readings since
    (refreshed,) = export.changed(engine.learnt_baselines(), ids, 0)
    assert (refreshed.device_id, refreshed.baseline, refreshed.current) == ("patch-1", 33.0, 33.0)
    assert refreshed.at_us == at(60 * 51 - 5)
    # A restart (a new export) writes patch-2's row again with the stamp it had: still old.
    again = {
        b.device_id: b.at_us for b in BaselineExport().changed(engine.learnt_baselines(), ids, 0)
    }
    assert again == {"patch-1": at(60 * 51 - 5), "patch-2": at(60 * 27 - 5)}
    # ... unless the patch has been silent longer than the rows are kept: not written back.
    recent = BaselineExport().changed(engine.learnt_baselines(), ids, at(60 * 30))
    assert [b.device_id for b in recent] == ["patch-1"]


def test_the_runtime_writes_changed_baselines_to_the_readings_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'readings.db'}")
    store.migrate()

    async def scenario() -> tuple[int, int, int]:
        settings = RuntimeSettings(data_clock=True, baselines_every_s=3600)
        async with RuleRuntime(load_pack("dressings"), REGISTRY, store, None, settings) as rt:
            rt.engine.process_readings(_hours("patch-1", 0, 27, 33.0))
            first = await rt.export_baselines()
            again = await rt.export_baselines()
            rt.engine.process_readings(_hours("patch-1", 27, 28, 34.0))
            moved = await rt.export_baselines()
            return first, again, moved

    try:
        assert asyncio.run(scenario()) == (1, 0, 1)
        (row,) = store.baselines(["patch-1", "patch-2"])
        assert isinstance(row, WoundBaseline) and row.rule_id == RULE
        assert row.baseline == 33.0 and row.delta is not None and row.delta > 0.5
    finally:
        store.close()
