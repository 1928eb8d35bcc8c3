"""Presence end to end on a real Mosquitto: a SIGKILLed simulator's last will becomes an offline
status in the device file and a ``presence.offline`` alert; gateway health reaches the service;
every bad status, health, result, reply or request is dead-lettered with its reason."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from contract import AlertEvent, AlertTransition
from contract.health import GatewayHealth, health_topic
from contract.presence import PresenceReason, PresenceState
from infra.mqtt_properties import publish_properties
from service.presence_model import OFFLINE_RULE
from tests.alert_listener import alert_listener
from tests.e2e_remote.harness import GATEWAY, SITE, remote_site
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

pytestmark = pytest.mark.services


def _simulator(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """``vigil sim run`` with one ultrasound keeping presence, as its own process."""
    env = {
        **os.environ,
        "VIGIL_CONFIG": str(tmp / "absent.toml"),
        "VIGIL_SIMULATOR__REMOTE": "true",
        "VIGIL_SIMULATOR__EQUIPMENT": "1",
        "VIGIL_SIMULATOR__PATCHES": "0",
        "VIGIL_SIMULATOR__TICKS": "1000000",
        "VIGIL_SIMULATOR__TICK_WALL_S": "0.5",
        "VIGIL_SITE_BROKER__PORT": str(port),
        "VIGIL_GATEWAY__SITE": SITE,
    }
    code = "from vigil.cli import app; app()"
    return subprocess.Popen([sys.executable, "-c", code, "sim", "run"], env=env)


async def test_sigkilled_equipment_goes_offline_with_an_alert(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    alerts: list[AlertEvent] = []
    async with (
        remote_site(mosquitto.port, tmp_path) as here,
        alert_listener(mosquitto.port, alerts),
    ):
        sim = _simulator(mosquitto.port, tmp_path)
        try:
            await wait_until_async(
                lambda: (
                    (p := here.store.presence("us-000")) is not None
                    and p.state is PresenceState.ONLINE
                ),
                60,
                "us-000 online (relayed by the gateway)",
            )
            sim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            sim.wait()
        finally:
            if sim.poll() is None:
                sim.kill()
        await wait_until_async(
            lambda: any(a.rule_id == OFFLINE_RULE for a in alerts), 30, "offline alert"
        )
        took = time.monotonic() - killed
        [alert] = [a for a in alerts if a.rule_id == OFFLINE_RULE]
        assert alert.device_id == "us-000" and alert.transition is AlertTransition.RAISED
        assert alert.evidence["gateway_id"] == GATEWAY
        assert took < 10, f"the offline alert took {took:.1f}s (the silence rule: 15 min)"
        record = here.store.presence("us-000")
        assert record is not None and record.state is PresenceState.OFFLINE
        assert record.reason is PresenceReason.LAST_WILL and record.alert_raised
        file = here.api.get("/devices/us-000/presence", headers=here.headers("eng1"))
        assert file.status_code == 200, file.text
        body = file.json()
        assert body["state"] == "offline" and body["last_online_us"] and body["uptime_s"] is None

        # The gateway itself: online, with the health summary it publishes (retained).
        health = GatewayHealth(
            gateway_id=GATEWAY,
            at_us=time.time_ns() // 1000,
            uptime_s=5.0,
            outbox_pending=3,
            faults=["gateway.ble.adapter_gone"],
        )
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-gw") as c:
            await c.publish(health_topic(GATEWAY), health.encode(), qos=1, retain=True)
        await wait_until_async(
            lambda: here.store.gateway_health(GATEWAY) is not None, 20, "health stored"
        )
        seen = here.api.get(f"/gateways/{GATEWAY}", headers=here.headers("adm"))
        assert seen.status_code == 200, seen.text
        gateway = seen.json()
        assert gateway["presence"]["state"] == "online" and gateway["presence"]["uptime_s"] >= 0
        assert gateway["health"]["outbox_pending"] == 3
        assert here.api.get("/gateways/nope", headers=here.headers("adm")).status_code == 404

        # One device, one file: its presence and the health of the gateway relaying it.
        file = here.api.get("/devices/us-000/file", headers=here.headers("eng1"))
        assert file.status_code == 200, file.text
        shown = file.json()
        assert shown["presence"]["state"] == "offline" and shown["presence"]["alert_raised"]
        assert shown["gateway"]["gateway_id"] == GATEWAY
        assert shown["gateway"]["health"]["faults"] == ["gateway.ble.adapter_gone"]


BAD_UPLINK = [
    ("vigil/v1/gateways/gw-x/status", b"not json", "presence status"),
    (
        "vigil/v1/gateways/gw-x/status",
        b'{"kind":"equipment","id":"us-1","state":"online","reason":"connected","at_us":1}',
        "status of equipment",
    ),
    ("vigil/v1/gateways/gw-x/status/us-1", b'{"kind":"gateway"}', "presence status"),
    ("vigil/v1/gateways/gw-x/health", b"[]", "gateway health"),
    (
        "vigil/v1/gateways/gw-x/command-results",
        b'{"command_id":"nope","gateway_id":"gw-x","device_id":"us-1","command":"self_test",'
        b'"status":"ok","at_us":1700000000000000}',
        "no command",
    ),
    ("vigil/v1/gateways/gw-x/command-results", b"{}", "command result"),
]
BAD_GATEWAY = [
    (f"site/{SITE}/equipment/us-9/status", b"\xff\xfe", "presence status"),
    (f"site/{SITE}/gateways/{GATEWAY}/replies", b"{}", "no command in flight"),
    (f"vigil/v1/gateways/{GATEWAY}/commands/c-1", b'{"command":"format_disk"}', "command request"),
]


async def test_bad_messages_are_dead_lettered_with_reasons(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    async with remote_site(mosquitto.port, tmp_path) as here:
        assert here.agent is not None
        await wait_until_async(here.agent.connected.is_set, 20, "gateway channel up")
        await wait_until_async(here.presence.status_loop.subscribed.is_set, 20, "service up")
        async with aiomqtt.Client(
            "127.0.0.1",
            mosquitto.port,
            identifier="test-hostile",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            for topic, payload, _ in [*BAD_UPLINK, *BAD_GATEWAY]:
                await client.publish(topic, payload, qos=1, properties=publish_properties())
        await wait_until_async(
            lambda: len(here.store.dead_letters()) >= len(BAD_UPLINK), 20, "service dead letters"
        )
        await wait_until_async(
            lambda: len(here.outbox.dead_letters()) >= len(BAD_GATEWAY), 20, "gateway letters"
        )
        service = [(d.topic, d.reason) for d in here.store.dead_letters()]
        for topic, _, reason in BAD_UPLINK:
            assert any(t == topic and reason in r for t, r in service), (topic, reason, service)
        gateway = here.outbox.dead_letters()
        for topic, _, reason in BAD_GATEWAY:
            assert any(t == topic and reason in r for t, r, _ in gateway), (topic, reason, gateway)
        # Nothing bad was recorded as presence, and the channel is still up.
        assert here.store.presence("us-1") is None and here.agent.connected.is_set()
        await asyncio.sleep(0)


async def test_a_gateway_process_keeps_presence_and_says_goodbye(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    """The real ``Gateway`` with ``remote`` set: online while it runs, ``shutdown`` when it stops
    cleanly (no alert), its health summary in the gateway file."""
    from gateway.app import Gateway, GatewaySettings
    from gateway.equipment_bridge import SiteBrokerSettings
    from gateway.remote import RemoteSettings
    from gateway.uplink import UplinkSettings

    alerts: list[AlertEvent] = []
    settings = GatewaySettings(
        gateway_id="gw-proc",
        outbox_path=tmp_path / "gw.db",
        uplink=UplinkSettings(port=mosquitto.port, require_confirmation=False),
        site_broker=SiteBrokerSettings(port=mosquitto.port, site=SITE),
        remote=RemoteSettings(),
        health_every_s=0.2,
    )
    async with (
        remote_site(mosquitto.port, tmp_path, gateway=False) as here,
        alert_listener(mosquitto.port, alerts),
    ):
        async with Gateway(settings) as gw:
            assert gw.remote is not None
            await wait_until_async(
                lambda: (
                    (p := here.store.presence("gw-proc")) is not None
                    and p.state is PresenceState.ONLINE
                ),
                20,
                "gateway online",
            )
            await wait_until_async(
                lambda: here.store.gateway_health("gw-proc") is not None, 20, "health stored"
            )
        await wait_until_async(
            lambda: here.store.presence("gw-proc").reason is PresenceReason.SHUTDOWN,  # type: ignore[union-attr]
            20,
            "clean goodbye",
        )
        seen = here.api.get("/gateways/gw-proc", headers=here.headers("eng1")).json()
        assert seen["presence"]["state"] == "offline" and seen["health"]["gateway_id"] == "gw-proc"
        assert not [a for a in alerts if a.rule_id == OFFLINE_RULE]
