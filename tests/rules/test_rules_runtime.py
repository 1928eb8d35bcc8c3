"""RuleRuntime without a broker: alert book, storage in SQLite, snapshots across restarts."""

from __future__ import annotations

from pathlib import Path

from contract import AlertTransition, Batch
from ingest.storage.sqlite import SQLiteStore
from rules.runtime import RuleRuntime, RuntimeSettings
from tests.rules.harness import MIN, T0, r, rules_from

RULES = rules_from("""
rules:
  - {id: wet, kind: sustained, severity: warning, source: s, scope: {metric: exudate},
     raise: {above: 85, for: 2m}, clear: {below: 20}}
  - {id: quiet, kind: silence, severity: warning, source: s, scope: {metric: exudate},
     after: 10m}
""")


def _batch(seq: int, minute: float, value: float) -> Batch:
    return Batch("gw", seq, (r("p1", "exudate", minute, value, seq),))


async def test_alerts_are_stored_and_survive_a_restart(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "vigil.db"))
    store.migrate()
    settings = RuntimeSettings(snapshot_path=tmp_path / "rules.snap", data_clock=True)
    async with RuleRuntime(RULES, {}, store, None, settings) as runtime:
        for seq, minute in enumerate(range(4)):
            await runtime.on_stored([_batch(seq, minute, 90.0)])
        assert runtime.book.get("p1", "wet") is not None
    # A new process: the raise from before the restart is still in the book, so the clear
    # that follows is delivered rather than dropped as unknown.
    async with RuleRuntime(RULES, {}, store, None, settings) as runtime:
        assert runtime.book.get("p1", "wet") is not None
        await runtime.on_stored([_batch(9, 4, 5.0)])
        assert runtime.book.get("p1", "wet") is None
        silent = await runtime.tick(T0 + 20 * MIN)
        assert [(e.rule_id, e.transition) for e in silent] == [("quiet", AlertTransition.RAISED)]
    stored = [(e.rule_id, e.transition.value) for e in store.fetch_alert_events("p1")]
    assert stored == [("wet", "raised"), ("wet", "cleared"), ("quiet", "raised")]
    store.close()


async def test_an_unusable_snapshot_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "rules.snap"
    path.write_bytes(b"not a snapshot")
    async with RuleRuntime(RULES, {}, None, None, RuntimeSettings(snapshot_path=path)) as rt:
        assert rt.engine.stats.accepted == 0
    assert path.read_bytes() != b"not a snapshot"
