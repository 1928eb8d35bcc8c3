"""The outbox bound is raised as an alert upstream, never silent; and cleared when it eases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from contract import AlertEvent, AlertTransition, Reading, Severity, decode_alert
from contract.topics import alert_topic
from gateway.app import Gateway, GatewaySettings
from gateway.outbox import Outbox
from gateway.overflow_alert import RULE_ID, OverflowAlarm
from gateway.uplink import UplinkSettings
from tests.gateway.confirming_ingest import sqlite_ingest
from tests.servers import PrivateMosquitto

T0_US = 1_767_225_600_000_000
BOUND = 100


def readings(start: int, count: int) -> list[Reading]:
    """``count`` distinct valid readings numbered from ``start``."""
    return [
        Reading("patch-0002", "skin_temp", 33.0, "degC", T0_US + i, i)
        for i in range(start, start + count)
    ]


def drain(outbox: Outbox, down_to: int) -> None:
    """Acknowledge batches as a connected uplink would until at most ``down_to`` remain."""
    while outbox.stats().pending_readings > down_to:
        batch = outbox.next_batch(10)
        assert batch is not None
        outbox.acknowledge(batch.batch_seq)


def test_alarm_raises_once_clears_below_80_percent_and_rearms(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-a", max_readings=BOUND)
    alarm = OverflowAlarm(outbox)
    assert alarm.check() is None
    outbox.append(readings(0, 130))
    raised = alarm.check()
    assert raised is not None and raised.transition == AlertTransition.RAISED
    assert (raised.device_id, raised.rule_id) == ("gw-a", RULE_ID)
    assert raised.severity == Severity.WARNING
    assert raised.evidence["dropped"] == 30 and raised.evidence["bound"] == BOUND
    outbox.append(readings(130, 5))  # more drops while raised: no second event
    assert alarm.check() is None
    drain(outbox, 80)  # 80 is not below 80 % of 100
    assert alarm.check() is None
    drain(outbox, 79)
    cleared = alarm.check()
    assert cleared is not None and cleared.transition == AlertTransition.CLEARED
    assert cleared.evidence["dropped"] == 35
    outbox.append(readings(135, 40))  # back over the bound: a new episode
    again = alarm.check()
    assert again is not None and again.transition == AlertTransition.RAISED
    assert again.evidence["dropped_since_last_alert"] == again.evidence["dropped"] - 35
    payloads = [decode_alert(p) for _, p in outbox.queued_alerts()]
    assert payloads == [raised, cleared, again]
    outbox.close()


def test_drops_before_a_crash_still_raise_after_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-a", max_readings=BOUND)
    outbox.append(readings(0, 150))  # the process dies before the alarm looks
    outbox.close()
    outbox = Outbox(tmp_path / "o.db", "gw-a", max_readings=BOUND)
    event = OverflowAlarm(outbox).check()
    assert event is not None and event.transition == AlertTransition.RAISED
    assert event.evidence["dropped"] == 50
    outbox.close()


async def _collect_alerts(port: int, gateway_id: str, want: int) -> list[AlertEvent]:
    """Alert events for the gateway, from a persistent session subscribed beforehand."""
    events: list[AlertEvent] = []
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="alert-watch", clean_session=False
    ) as client:
        await client.subscribe(alert_topic(gateway_id), qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            events.append(decode_alert(message.payload))
            if len(events) == want:
                return events
    return events


async def _subscribe_once(port: int, gateway_id: str) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="alert-watch", clean_session=False
    ) as client:
        await client.subscribe(alert_topic(gateway_id), qos=1)


async def test_overflow_during_outage_is_published_after_reconnect(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    await _subscribe_once(mosquitto.port, "gw-o")  # the session queues alerts while away
    mosquitto.stop()  # the uplink is down from the start
    settings = GatewaySettings(
        gateway_id="gw-o",
        outbox_path=tmp_path / "outbox.db",
        outbox_max_readings=BOUND,
        # A batch published before ingest subscribed is resent after the short timeout.
        uplink=UplinkSettings(
            port=mosquitto.port,
            batch_max_readings=10,
            reconnect_backoff_s=0.1,
            reconnect_backoff_max_s=0.5,
            confirm_timeout_s=1.0,
        ),
    )
    async with Gateway(settings) as gateway:
        await gateway.accept(readings(0, 70))
        await gateway.accept(readings(70, 70))
        stats = gateway.outbox.stats()
        assert (stats.pending_readings, stats.dropped_readings) == (BOUND, 40)
        assert gateway.counters.value("vigil_gateway_outbox_dropped_total") == 40
        assert len(gateway.outbox.queued_alerts()) == 1  # waiting for the uplink, durably
        mosquitto.start()
        # Cleared only as ingest confirms what it stored: unconfirmed readings still count.
        async with sqlite_ingest(mosquitto.port, tmp_path / "ingest.db") as ingest:
            events = await asyncio.wait_for(_collect_alerts(mosquitto.port, "gw-o", 2), 30)
            await asyncio.wait_for(gateway.drained(), 30)
            assert ingest.store.reading_count() == BOUND
    assert [e.transition for e in events] == [AlertTransition.RAISED, AlertTransition.CLEARED]
    assert all(e.device_id == "gw-o" and e.rule_id == RULE_ID for e in events)
    assert events[0].evidence["dropped"] == 40 and events[0].evidence["bound"] == BOUND
    check = Outbox(tmp_path / "outbox.db", "gw-o")
    assert check.queued_alerts() == []
    check.close()
