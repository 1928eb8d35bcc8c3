"""End to end on real servers: infected patch → gateway → Mosquitto → ingest (TimescaleDB) → rules
→ alert on MQTT → service worker → ticket dispatched to the right engineer → signed webhook.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from contract.webhooks import EVENT_ID_HEADER, WebhookRejected, WebhookVerifier
from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from rules import load_pack
from rules.runtime import RuleRuntime
from service.model import Engineer, Tier
from service.store import PostgresStore
from service.worker import Endpoint, NotifyConfig, ServiceWorker, WorkerSettings
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.servers import PrivateMosquitto, PrivatePostgres
from tests.service.live import fresh_database
from tests.waiting import wait_until_async
from tests.webhook_receiver import Receiver
from vigil.demo import DEMO_INFECTION_START_S, DEMO_TICK_S, seed_service

SECRET = "e2e-shared-secret"
INFECTED = "patch-0003"


@pytest.fixture
def dsn(postgres_server: PrivatePostgres) -> Iterator[str]:
    with fresh_database(postgres_server) as name:
        yield name


@pytest.mark.services
async def test_infection_becomes_a_dispatched_ticket_and_a_signed_webhook(
    mosquitto: PrivateMosquitto, dsn: str, receiver: Receiver, tmp_path: Path
) -> None:
    # After the wound's baseline is learnt; 250 ticks of 10 min end just after the confirmed
    # (critical) infection alert.
    infection = Fault(INFECTED, FaultKind.INFECTION, start_s=DEMO_INFECTION_START_S)
    fleet = Fleet(FleetSpec(patches=6, equipment=0, tick_s=DEMO_TICK_S, faults=(infection,)))
    service = PostgresStore(dsn)
    seed_service(service, fleet)
    # A skilled engineer in the wrong region, and one who is full: neither may get the ticket.
    service.put_engineer(
        Engineer(id="eng-aaa", name="Full", region="north", skills=frozenset({"patch"}), capacity=0)
    )
    readings = TimescaleStore(dsn)
    readings.migrate()
    hook = Endpoint(url=receiver.url, secret=SECRET)
    notify = NotifyConfig(
        service_team=(hook,),
        # A wound alert is the clinical team's (the nurse on duty), not field service's.
        clinical={fleet.spec.site: (hook,)},
        engineers={"eng-ana": (hook,), "eng-ben": (hook,)},
        patients={"pt-0003": (hook,)},
        attempts=3,
        backoff_s=0.1,
    )
    host, port = "127.0.0.1", mosquitto.port
    opened = asyncio.Event()
    worker = ServiceWorker(
        WorkerSettings(host=host, port=port, client_id="e2e-service", tick_s=3600, notify=notify),
        service,
        on_ticket=lambda t, _: opened.set() if t.rule_id == "dressing.infection_signs" else None,
    )
    engineer_topic: list[bytes] = []
    async with (
        aiomqtt.Client(host, port, identifier="e2e-rules") as rules_client,
        aiomqtt.Client(host, port, identifier="e2e-listener") as listener,
    ):
        await listener.subscribe("vigil/v1/notifications/engineer/#", qos=1)

        async def listen() -> None:
            async for message in listener.messages:
                assert isinstance(message.payload, bytes)
                engineer_topic.append(message.payload)

        runtime = RuleRuntime(load_pack("dressings"), None, readings, rules_client)
        ingest = IngestWorker(
            IngestSettings(host=host, port=port, client_id="e2e-ingest"),
            readings,
            on_stored=runtime.on_stored,
        )
        tasks = [asyncio.create_task(c) for c in (ingest.run(), worker.run(), listen())]
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        await asyncio.wait_for(worker.subscribed.wait(), 10)
        gateway = Gateway(
            GatewaySettings(
                gateway_id="e2e-gw",
                outbox_path=tmp_path / "ob.db",
                uplink=UplinkSettings(host=host, port=port),
            )
        )
        gateway.sources.insert(0, SimulatedFleet(fleet, 250))
        async with gateway:
            await gateway.sources_done()
            await gateway.drained()
        await asyncio.wait_for(opened.wait(), 30)
        await worker.drain()
        await wait_until_async(
            lambda: any(
                json.loads(p).get("rule_id") == "dressing.infection_signs" for p in engineer_topic
            ),
            10,
            "the engineer's MQTT notification",
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    assert readings.reading_count() == fleet.tally.readings
    urgent = next(
        t for t in service.tickets(device_ids=[INFECTED]) if t.rule_id == "dressing.infection_signs"
    )
    assert urgent.tier is Tier.URGENT and urgent.state == "dispatched"
    assert urgent.assignee in {"eng-ana", "eng-ben"}  # north, skilled in patches, not full
    assert "region north, skilled in patch" in urgent.dispatch_reason
    # Raised and stored (which other dressing alerts come after it depends on how batches
    # interleave under load; the ticket above is what matters to the nurse).
    assert "dressing.infection_signs" in {e.rule_id for e in readings.fetch_alert_events(INFECTED)}
    # Webhooks: signed, fresh, and for the right people.
    mine = [(h, b) for h, b in receiver.received if json.loads(b)["ticket_id"] == urgent.id]
    assert len(mine) == 3  # the site's clinical team, the wound-care engineer, the carer
    verifier = WebhookVerifier(SECRET.encode())
    for headers, body in mine:
        assert verifier.verify(headers, body).event_id == headers[EVENT_ID_HEADER]
        with pytest.raises(WebhookRejected, match="signature"):
            WebhookVerifier(b"wrong").verify(headers, body)
    carer = [json.loads(b) for _, b in mine if "message" in json.loads(b)]
    assert carer and "assignee" not in carer[0]
    assert "nurse" in carer[0]["message"] and "engineer" not in carer[0]["message"]
    # Every delivery recorded: three webhooks plus four MQTT topics for this ticket.
    recorded = [d for d in service.deliveries() if d.event_id.startswith(urgent.id)]
    assert all(d.ok for d in recorded) and len(recorded) == 7
    assert any(json.loads(p)["ticket_id"] == urgent.id for p in engineer_topic)
    # A redelivered alert changes nothing (at-least-once in, exactly-once effect).
    again = readings.fetch_alert_events(INFECTED)[-1]
    before = service.tickets()
    assert await worker.handle_alert(again) is None
    assert service.tickets() == before
    readings.close()
    service.close()
