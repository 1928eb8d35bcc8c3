"""Gateway health: fault alerts about the gateway itself, and the periodic summary message."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from contract import AlertTransition, decode_alert
from contract.health import decode_health, health_topic
from contract.topics import alert_topic
from gateway.app import Gateway, GatewaySettings
from gateway.ble import BleAcquisition
from gateway.counters import GatewayCounters
from gateway.health import SOURCE_FAILED, HealthAlarms
from gateway.outbox import Outbox
from gateway.uplink import UplinkSettings
from simulator.bleak_backend import (
    BlueZErrorForm,
    Stall,
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualPatch,
    VirtualRadio,
    populate,
)
from simulator.fleet import FleetSpec
from tests.bleak.test_bleak_harness import FAST, paired
from tests.gateway.test_gateway_edge import Crashing
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async


def settings(tmp_path: Path, port: int = 1, **kwargs: float) -> GatewaySettings:
    return GatewaySettings(
        gateway_id="gw-health",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(port=port, linger_s=0.01, reconnect_backoff_max_s=0.5),
        site_broker=None,
        **kwargs,  # type: ignore[arg-type]
    )


def queued(outbox: Outbox) -> list[tuple[str, AlertTransition]]:
    events = [decode_alert(payload) for _, payload in outbox.queued_alerts()]
    return [(e.rule_id, e.transition) for e in events]


def test_alarms_are_raised_and_cleared_once_and_survive_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-1")
    woken: list[int] = []
    alarms = HealthAlarms(outbox, lambda: woken.append(1))
    assert alarms.report("gateway.ble.scanner_silent", True, "deaf", {"adapter": "hci0"})
    assert alarms.report("gateway.ble.scanner_silent", True, "still deaf") is None
    outbox.close()
    outbox = Outbox(tmp_path / "o.db", "gw-1")
    alarms = HealthAlarms(outbox, lambda: woken.append(1))
    assert alarms.active("gateway.ble.scanner_silent")
    assert alarms.report("gateway.ble.scanner_silent", False, "hears again")
    assert queued(outbox) == [
        ("gateway.ble.scanner_silent", AlertTransition.RAISED),
        ("gateway.ble.scanner_silent", AlertTransition.CLEARED),
    ]
    assert len(woken) == 2
    event = decode_alert(outbox.queued_alerts()[0][1])
    assert event.device_id == "gw-1" and event.evidence == {"adapter": "hci0"}
    outbox.close()


async def test_a_dying_source_raises_a_source_failed_alert_before_the_exit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with Gateway(settings(tmp_path), [Crashing()]) as gateway:
        await asyncio.wait_for(gateway.wait_failed(), 10)
        assert queued(gateway.outbox) == [(SOURCE_FAILED, AlertTransition.RAISED)]
        event = decode_alert(gateway.outbox.queued_alerts()[0][1])
        assert "source bug" in event.message and event.evidence["task"] == "source:crashing"


async def test_a_restart_that_runs_healthy_clears_what_the_last_run_raised(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", "gw-health")
    HealthAlarms(outbox, lambda: None).report(SOURCE_FAILED, True, "died last time")
    HealthAlarms(outbox, lambda: None).report("gateway.ble.clock_untrusted", True, "behind")
    outbox.close()
    radio = VirtualRadio()
    patches = populate(radio, FleetSpec(patches=1))
    acquisition = _acquisition(radio, patches)
    async with Gateway(settings(tmp_path, healthy_after_s=0.2), [acquisition]) as gateway:
        await wait_until_async(
            lambda: (
                not gateway.alarms.active(SOURCE_FAILED)
                and not gateway.alarms.active("gateway.ble.clock_untrusted")
            ),
            10,
            "the stale alarms to clear",
        )


def _acquisition(
    radio: VirtualRadio,
    patches: list[VirtualPatch],
    registry: CollectorRegistry | None = None,
    scanner_max_failures: int = 10,
) -> BleAcquisition:
    config = replace(
        FAST,
        scanner_backend=VirtualBleakScanner.bind(radio),
        client_backend=VirtualBleakClient,
        watchdog_silence_s=10.0,
        scanner_max_failures=scanner_max_failures,
    )
    return BleAcquisition(
        paired(patches),
        config,
        clock=radio.monotonic,
        time_source=radio.gateway_clock,
        registry=registry,
    )


@pytest.mark.services
async def test_a_stall_is_one_alert_upstream_and_health_is_published(
    tmp_path: Path, mosquitto: PrivateMosquitto
) -> None:
    radio = VirtualRadio()
    patches = populate(radio, FleetSpec(patches=3), connectable=1)
    counters = GatewayCounters()
    acquisition = _acquisition(radio, patches, counters.registry)
    alerts: list[tuple[str, str]] = []
    health: list[bytes] = []

    async def listen(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if message.topic.matches(health_topic("gw-health")):
                health.append(payload)
            else:
                doc = json.loads(payload)
                alerts.append((doc["rule_id"], doc["transition"]))

    config = settings(tmp_path, port=mosquitto.port, health_every_s=0.2)
    async with (
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="health-watch") as watch,
        Gateway(config, [acquisition], counters),
    ):
        await watch.subscribe(health_topic("gw-health"), qos=1)
        await watch.subscribe(alert_topic("gw-health"), qos=1)
        listener = asyncio.create_task(listen(watch))
        await wait_until_async(lambda: acquisition.scanning, 10, "the scanner")
        await radio.play(5.0, step_s=0.5)
        radio.default_adapter.stall = Stall.RESTART
        await radio.play(20.0, step_s=0.5)
        await wait_until_async(
            lambda: ("gateway.ble.scanner_silent", "cleared") in alerts, 15, "raise and clear"
        )
        await wait_until_async(lambda: len(health) >= 2, 10, "health messages")
        listener.cancel()
    assert alerts.count(("gateway.ble.scanner_silent", "raised")) == 1
    assert not [a for a in alerts if a[0] == "gateway.ble.all_patches_silent"]
    summary = decode_health(health[-1])
    assert summary.gateway_id == "gw-health" and summary.ble is not None
    assert summary.ble.patches_paired == 3 and summary.ble.adapters[0].name == "hci0"
    assert summary.clock is not None and summary.clock.trusted
    exported = generate_latest(counters.registry).decode()
    assert "vigil_ble_scanner_restarts_total 1.0" in exported  # BLE beside the gateway's
    assert "vigil_gateway_readings_in_total" in exported


async def test_a_ble_source_that_cannot_start_raises_its_faults_then_fails_the_gateway(
    tmp_path: Path,
) -> None:
    """The scanner never starts: `scanner_failing` goes up, then past the limit the source
    dies, `gateway.source_failed` goes up, and the gateway reports the failure (exit 1)."""
    radio = VirtualRadio()
    patches = populate(radio, FleetSpec(patches=1))
    radio.default_adapter.fail_starts(BlueZErrorForm.NOT_READY, 10_000)
    acquisition = _acquisition(radio, patches, scanner_max_failures=2)
    async with Gateway(settings(tmp_path), [acquisition]) as gateway:
        failure = await asyncio.wait_for(gateway.wait_failed(), 20)
        assert "did not start" in str(failure)
        assert queued(gateway.outbox) == [
            ("gateway.ble.scanner_failing", AlertTransition.RAISED),
            (SOURCE_FAILED, AlertTransition.RAISED),
        ]
