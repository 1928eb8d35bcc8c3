"""The rules worker on the shared consume loop, on a real Mosquitto: dead letters and outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiomqtt

from contract import AlertEvent, Batch, encode_batch
from contract.topics import batch_topic
from infra.errors import StorageUnavailable
from infra.telemetry.sqlite import SQLiteStore
from rules.runtime import RuleRuntime, RuntimeSettings
from rules.worker import RulesWorker, RulesWorkerSettings
from tests.alert_listener import alert_listener
from tests.rules.harness import r, rules_from
from tests.servers import PrivateMosquitto

RULES = rules_from("""
rules:
  - {id: wet, kind: sustained, severity: warning, source: s, scope: {metric: exudate},
     raise: {above: 85, for: 2m}, clear: {below: 20}}
""")
SETTINGS = RuntimeSettings(data_clock=True, outbox_every_s=0.2)


class FlakyStore(SQLiteStore):
    """A SQLite store whose alert writes fail while ``down`` (a database outage)."""

    down = False
    refused = 0

    def store_alert_events(self, events: Sequence[AlertEvent]) -> int:
        if self.down:
            self.refused += 1
            raise StorageUnavailable("database down (test)")
        return super().store_alert_events(events)


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not predicate():  # noqa: ASYNC110 - the state lives in the worker and the broker
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _worker(port: int, runtime: RuleRuntime) -> AsyncIterator[RulesWorker]:
    worker = RulesWorker(RulesWorkerSettings(port=port, client_id="rules-w"), runtime)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 10)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _publish(port: int, payloads: Sequence[bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="rules-producer") as client:
        for payload in payloads:
            await client.publish(batch_topic("gw"), payload, qos=1)


def _wet(seqs: range) -> list[bytes]:
    return [encode_batch(Batch("gw", s, (r("p1", "exudate", s, 90.0, s),))) for s in seqs]


async def test_a_bad_batch_is_dead_lettered_and_the_rest_evaluated(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "vigil.db"))
    store.migrate()
    received: list[AlertEvent] = []
    async with (
        alert_listener(mosquitto.port, received),
        RuleRuntime(RULES, {}, store, None, SETTINGS) as runtime,
        _worker(mosquitto.port, runtime) as worker,
    ):
        await _publish(mosquitto.port, [b"not a batch", *_wet(range(4))])
        await _until(lambda: runtime.counters.batches == 4 and bool(received))
        assert worker.dead_letters == 1 and worker.loop.dead_lettered == 1
        assert worker.loop.committed == 4
    assert [(e.rule_id, e.transition.value) for e in received] == [("wet", "raised")]
    store.close()


async def test_a_storage_outage_holds_the_batch_and_loses_no_alert(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = FlakyStore(str(tmp_path / "vigil.db"))
    store.migrate()
    received: list[AlertEvent] = []
    async with (
        alert_listener(mosquitto.port, received),
        RuleRuntime(RULES, {}, store, None, SETTINGS) as runtime,
        _worker(mosquitto.port, runtime) as worker,
    ):
        await _publish(mosquitto.port, _wet(range(2)))
        await _until(lambda: runtime.counters.batches == 2)
        store.down = True
        # The batch that raises the alert is evaluated once; storing its alert fails and the
        # loop holds it; on the retry its readings are duplicates, yet the alert is stored.
        await _publish(mosquitto.port, _wet(range(2, 4)))
        await _until(lambda: store.refused >= 2)
        assert worker.loop.outage.active and runtime.counters.batches == 2
        store.down = False
        await _until(lambda: runtime.counters.batches == 4 and bool(received))
        assert not worker.loop.outage.active and worker.loop.dead_lettered == 0
    assert [(e.rule_id, e.transition.value) for e in received] == [("wet", "raised")]
    assert [e.rule_id for e in store.fetch_alert_events()] == ["wet"]
    assert store.unpublished_alert_events() == []
    store.close()
