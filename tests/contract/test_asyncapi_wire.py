"""Every message on the wire fits the AsyncAPI document: its topic names a channel, its payload
fits that channel's message schema.

A simulated fleet (patches and equipment) runs through a real gateway (equipment bridge, outbox,
uplink, health) into a real ingest worker (confirmations) on a private Mosquitto, while a
subscriber on ``#`` records everything published; the recorded traffic is checked against the
document as a vendor's or an auditor's tool would check it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from jsonschema import Draft7Validator

from contract.batch_binary import MAGIC_V2
from contract.codec import decode_batch, encode_batch
from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from infra.telemetry import open_store
from ingest.worker import IngestSettings, IngestWorker
from simulator.fleet import Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.contract.test_asyncapi import errors, payload_validator
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async
from vigil.commands.contract import asyncapi_yaml


def as_json(payload: bytes) -> bytes:
    """The JSON (version 1) form of a batch sent as wire version 2; other payloads as they are."""
    if not payload.startswith(MAGIC_V2):
        return payload
    return encode_batch(decode_batch(payload).batch, version=1)


def channel_matchers(doc: dict[str, Any]) -> list[tuple[str, re.Pattern[str], Draft7Validator]]:
    """(channel, its address as a regex, its message validator) for every channel."""
    matchers = []
    for name, channel in doc["channels"].items():
        pattern = re.compile(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(channel["address"])))
        (message,) = channel["messages"]
        matchers.append((name, pattern, payload_validator(doc, message)))
    return matchers


async def record(port: int, seen: list[tuple[str, bytes]], ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="wire-recorder") as client:
        await client.subscribe("#", qos=1)
        ready.set()
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            seen.append((str(message.topic), payload))


async def test_the_traffic_of_a_running_gateway_and_ingest_fits_the_document(
    tmp_path: Path, mosquitto: PrivateMosquitto
) -> None:
    port = mosquitto.port
    seen: list[tuple[str, bytes]] = []
    ready = asyncio.Event()
    recorder = asyncio.create_task(record(port, seen, ready))
    store = open_store(f"sqlite:///{tmp_path / 'readings.db'}")
    store.migrate()
    ingest = IngestWorker(IngestSettings(port=port, client_id="wire-ingest"), store)
    ingesting = asyncio.create_task(ingest.run())
    fleet = Fleet(FleetSpec(seed=5, patches=4, equipment=2))
    settings = GatewaySettings(
        gateway_id="gw-wire",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(port=port, batch_max_readings=50),
        site_broker=SiteBrokerSettings(port=port, site=fleet.spec.site),
        max_reading_age_s=None,  # the simulated fleet's clock starts days ago
        health_every_s=0.2,
    )
    try:
        await asyncio.wait_for(asyncio.gather(ready.wait(), ingest.subscribed.wait()), 30)
        gateway = Gateway(settings)
        assert gateway.bridge is not None
        simulation = SimulatedFleet(
            fleet, 6, site_broker=("127.0.0.1", port), start_after=gateway.bridge.subscribed
        )
        gateway.sources.insert(0, simulation)
        async with gateway:
            await asyncio.wait_for(gateway.sources_done(), 60)
            await wait_until_async(
                lambda: store.reading_count() >= fleet.tally.readings, 60, "all stored"
            )
            await asyncio.wait_for(gateway.drained(), 60)
            await wait_until_async(
                lambda: any(t.endswith("/health") for t, _ in seen), 30, "a health summary"
            )
    finally:
        for task in (recorder, ingesting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store.close()

    doc = yaml.safe_load(asyncapi_yaml())
    matchers = channel_matchers(doc)
    assert any(p.startswith(MAGIC_V2) for _, p in seen), "gateways send wire version 2"
    by_channel: dict[str, int] = {}
    for topic, payload in seen:
        names = [(n, v) for n, pattern, v in matchers if pattern.fullmatch(topic)]
        assert len(names) == 1, f"{topic} matches {[n for n, _ in names]} channels"
        name, validator = names[0]
        assert errors(validator, json.loads(as_json(payload))) == [], (topic, payload[:300])
        by_channel[name] = by_channel.get(name, 0) + 1
    assert {"equipmentTelemetry", "gatewayBatches", "gatewayConfirms", "gatewayHealth"} <= set(
        by_channel
    ), by_channel
    assert by_channel["equipmentTelemetry"] == 2 * 6
