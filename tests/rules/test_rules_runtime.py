"""RuleRuntime without a broker: alert book, storage in SQLite, snapshots, the publish outbox."""

from __future__ import annotations

from pathlib import Path

import aiomqtt

from contract import AlertTransition, Batch, decode_alert
from infra.telemetry.sqlite import SQLiteStore
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


class FlakyPublisher:
    """Records what it publishes; fails while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        if self.down:
            raise aiomqtt.MqttError("broker down")
        self.sent.append((topic, payload))


async def test_unpublished_alerts_go_out_oldest_first_before_new_ones(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "vigil.db"))
    store.migrate()
    publisher = FlakyPublisher()
    settings = RuntimeSettings(data_clock=True, outbox_every_s=3600.0)
    async with RuleRuntime(RULES, {}, store, publisher, settings) as runtime:
        for seq, minute in enumerate(range(4)):
            await runtime.on_stored([_batch(seq, minute, 90.0)])
        silent = await runtime.tick(T0 + 20 * MIN)
        assert len(silent) == 1 and publisher.sent == []
        assert len(store.unpublished_alert_events()) == 2
        publisher.down = False
        # The next alert waits behind the two pending ones, which go out first.
        await runtime.on_stored([_batch(9, 21, 5.0)])
    order = [
        (e.rule_id, e.transition.value) for e in map(decode_alert, (p for _, p in publisher.sent))
    ]
    assert order[:2] == [("wet", "raised"), ("quiet", "raised")]
    assert sorted(order[2:]) == [("quiet", "cleared"), ("wet", "cleared")]
    assert store.unpublished_alert_events() == []
    assert runtime.counters.publish_failures >= 1
    store.close()
