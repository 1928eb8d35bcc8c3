"""The alert outbox on a real Mosquitto: alerts stored while unpublishable go out later."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt

from contract import AlertEvent, AlertTransition, Batch
from infra.telemetry.sqlite import SQLiteStore
from rules.runtime import RuleRuntime, RuntimeSettings, publish_through
from rules.worker import RulesWorker, RulesWorkerSettings
from tests.alert_listener import alert_listener
from tests.rules.harness import r, rules_from
from tests.servers import PrivateMosquitto, free_port
from tests.waiting import wait_until_async

RULES = rules_from("""
rules:
  - {id: wet, kind: sustained, severity: warning, source: s, scope: {metric: exudate},
     raise: {above: 85, for: 2m}, clear: {below: 20}}
""")
SETTINGS = RuntimeSettings(data_clock=True, outbox_every_s=0.2)


def _wet_batches() -> list[Batch]:
    """Four minutes of a soaked dressing: enough to raise ``wet`` on p1."""
    return [Batch("gw", seq, (r("p1", "exudate", seq, 90.0, seq),)) for seq in range(4)]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_alert_raised_while_the_broker_is_down_goes_out_when_it_returns(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "vigil.db"))
    store.migrate()
    # The publisher may connect only once the listener is back, so nothing is missed by it.
    listening = asyncio.Event()
    nowhere = free_port()

    def connect() -> aiomqtt.Client:
        port = mosquitto.port if listening.is_set() else nowhere
        return aiomqtt.Client("127.0.0.1", port, identifier="outbox-rules")

    received: list[AlertEvent] = []
    async with RuleRuntime(RULES, {}, store, None, SETTINGS) as runtime:
        link = asyncio.create_task(publish_through(runtime, connect, backoff_s=0.05))
        try:
            mosquitto.kill()
            for batch in _wet_batches():
                await runtime.on_stored([batch])
            [raised] = list(runtime.recent)
            assert raised.transition is AlertTransition.RAISED
            assert store.unpublished_alert_events() == [raised]
            assert runtime.counters.published == 0

            mosquitto.start()
            async with alert_listener(mosquitto.port, received):
                listening.set()
                await wait_until_async(lambda: received, 15, "the alert")
                await wait_until_async(
                    lambda: not store.unpublished_alert_events(), 15, "the outbox emptied"
                )
        finally:
            await _cancel(link)
    assert received == [raised]
    assert (runtime.counters.published, runtime.counters.published_late) == (1, 1)
    assert store.fetch_alert_events() == [raised]
    store.close()


async def test_publish_failure_on_a_dead_connection_is_retried(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "vigil.db"))
    store.migrate()
    received: list[AlertEvent] = []
    async with (
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="outbox-dead") as dead,
        RuleRuntime(RULES, {}, store, dead, SETTINGS) as runtime,
    ):
        mosquitto.kill()
        # Publishing on the client of a dead broker fails: the alert stays in the outbox.
        for batch in _wet_batches():
            await runtime.on_stored([batch])
        [raised] = list(runtime.recent)
        assert runtime.counters.publish_failures >= 1
        assert store.unpublished_alert_events() == [raised]
        mosquitto.start()
        async with (
            alert_listener(mosquitto.port, received),
            aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="outbox-live") as live,
        ):
            runtime.publisher = live  # a reconnection, as the workers report it
            await wait_until_async(lambda: received, 15, "the alert")
            await wait_until_async(
                lambda: not store.unpublished_alert_events(), 15, "the outbox emptied"
            )
            runtime.publisher = None
    assert received == [raised]
    store.close()


async def test_a_restarted_runtime_publishes_what_a_crash_left_unpublished(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "vigil.db"))
    store.migrate()
    settings = RuntimeSettings(
        snapshot_path=tmp_path / "rules.snap", data_clock=True, outbox_every_s=60.0
    )
    # First process: it stores the alert and dies before publishing it (no publisher yet).
    async with RuleRuntime(RULES, {}, store, None, settings) as first:
        for batch in _wet_batches():
            await first.on_stored([batch])
    [raised] = list(first.recent)
    assert store.unpublished_alert_events() == [raised]

    # Second process, the broker-fed worker: the redelivered batches are duplicates for the
    # engine, so only the outbox can still publish the alert, as soon as the worker connects.
    received: list[AlertEvent] = []
    async with (
        alert_listener(mosquitto.port, received),
        RuleRuntime(RULES, {}, store, None, settings) as second,
    ):
        worker = RulesWorker(RulesWorkerSettings(port=mosquitto.port, client_id="outbox-w"), second)
        task = asyncio.create_task(worker.run())
        try:
            await wait_until_async(lambda: received, 15, "the alert")
            await wait_until_async(
                lambda: not store.unpublished_alert_events(), 15, "the outbox emptied"
            )
            for batch in _wet_batches():
                await second.on_stored([batch])
            assert list(second.recent) == []
        finally:
            await _cancel(task)
    assert received == [raised]
    assert second.counters.published_late == 1
    store.close()
