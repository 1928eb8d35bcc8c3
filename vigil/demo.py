"""`make demo`: the whole data path on the embedded default, no servers to install.

simulated fleet → gateway (outbox, batches) → embedded MQTT broker → ingest → SQLite
→ rules → alerts on MQTT → service worker → ticket dispatched to the right engineer.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import aiomqtt
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contract import AlertEvent, Batch, DeviceKind
from contract.topics import alert_topic, batch_topic
from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from ingest.storage import open_store
from ingest.storage.base import ReadingStore, datetime_from_us
from ingest.worker import IngestSettings, IngestWorker
from rules import AlertBook, RuleEngine, load_pack
from service.model import Device, Engineer, Patient, Site, Ticket
from service.sla import SlaConfig, sla_status
from service.store import ServiceStore, SqliteStore
from service.worker import ServiceWorker, WorkerSettings
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec, equipment_kind
from simulator.runner import SimulatedFleet
from vigil.embedded_broker import EmbeddedBroker


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo measured."""

    devices: int
    produced: int
    stored: int
    value_sum_produced: float
    value_sum_stored: float
    dead_letters: int
    seconds: float
    db_path: Path
    alerts: int = 0
    tickets: list[Ticket] = field(default_factory=list)
    service_db: Path | None = None


def demo_faults() -> tuple[Fault, ...]:
    """The demo's scripted trouble: an infected wound, a detached patch, a mains sag."""
    return (
        Fault("patch-0003", FaultKind.INFECTION, start_s=2 * 3600),
        Fault("patch-0007", FaultKind.DETACH, start_s=3 * 3600),
        Fault("us-000", FaultKind.MAINS_SAG, start_s=4 * 3600, duration_s=1800),
    )


# Simulated seconds per tick: ten minutes, so 360 ticks cover 60 h and an infection that starts
# at 2 h is both alkaline for 6 h and warmer than the patch's own 24 h baseline before the end.
DEMO_TICK_S = 600.0
DEMO_REGION = "north"


def demo_installed_base(fleet: Fleet, site: str) -> tuple[Site, list[Device], list[Patient],
                                                          list[Engineer]]:
    """The service desk's view of the demo fleet: one hospital, home kits, four engineers."""
    installed = date(2025, 6, 1)
    hospital = Site(id=site, hospital="St. Demo Hospital", region=DEMO_REGION)
    devices = [
        Device(id=p.device_id, kind=DeviceKind.PATCH, model="VP-1", serial=f"SN-{p.device_id}",
               lot="L2025-06", installed_on=installed, site_id=site,
               patient=f"pt-{p.device_id.removeprefix('patch-')}")
        for p in fleet.patches
    ] + [
        Device(id=e.device_id, kind=equipment_kind(i), model=f"{equipment_kind(i)}-X",
               serial=f"SN-{e.device_id}", installed_on=installed, site_id=site)
        for i, e in enumerate(fleet.equipment)
    ]  # fmt: skip
    patients = [Patient(id=d.patient, site_id=site, kit=(d.id,)) for d in devices if d.patient]
    engineers = [
        Engineer(id="eng-ana", name="Ana (wound care, north)", region=DEMO_REGION,
                 skills=frozenset({DeviceKind.PATCH}), capacity=12, supervisor="sup-north"),
        Engineer(id="eng-ben", name="Ben (wound care, north)", region=DEMO_REGION,
                 skills=frozenset({DeviceKind.PATCH}), capacity=6, supervisor="sup-north"),
        Engineer(id="eng-cem", name="Cem (imaging, north)", region=DEMO_REGION,
                 skills=frozenset({DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE})),
        Engineer(id="eng-dia", name="Dia (wound care, south)", region="south",
                 skills=frozenset({DeviceKind.PATCH})),
    ]  # fmt: skip
    return hospital, devices, patients, engineers


def seed_service(store: ServiceStore, fleet: Fleet) -> None:
    """Put the demo's installed base into the service store."""
    site, devices, patients, engineers = demo_installed_base(fleet, fleet.spec.site)
    with store.atomic():
        store.put_site(site)
        for device in devices:
            store.put_device(device)
        for patient in patients:
            store.put_patient(patient)
        for engineer in engineers:
            store.put_engineer(engineer)


class AlertPublisher:
    """Runs the rule engine on what ingest stored and publishes the alerts (QoS 1).

    A stand-in for ``rules/runtime.py`` until it lands: same topic, same QoS, same storage.
    """

    def __init__(self, engine: RuleEngine, client: aiomqtt.Client, store: ReadingStore) -> None:
        self.engine = engine
        self.client = client
        self.store = store
        self.book = AlertBook()
        self.published = 0
        self.last_at_us = 0

    async def __call__(self, batches: Sequence[Batch]) -> None:
        """The ingest worker's ``on_stored`` hook."""
        readings = [r for b in batches for r in b.readings]
        events = self.book.apply(self.engine.process_readings(readings))
        if not events:
            return
        await asyncio.to_thread(self.store.store_alert_events, events)
        for event in events:
            self.last_at_us = max(self.last_at_us, event.at_us)
            await self.publish(event)

    async def publish(self, event: AlertEvent) -> None:
        """Publish one alert event on its device's alert topic."""
        await self.client.publish(alert_topic(event.device_id), event.encode(), qos=1)
        self.published += 1


async def run_demo(
    *, patches: int = 50, equipment: int = 5, ticks: int = 360, seed: int = 7,
    port: int = 18830, workdir: Path | None = None, console: Console | None = None,
) -> DemoResult:
    """Run the scenario end to end and return the reconciliation."""
    console = console or Console()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    db_path = workdir / "vigil.db"
    fleet = Fleet(FleetSpec(seed=seed, patches=patches, equipment=equipment,
                            faults=demo_faults(), tick_s=DEMO_TICK_S))
    store = open_store(f"sqlite:///{db_path}")
    store.migrate()
    service_db = workdir / "service.db"
    service = SqliteStore(service_db)
    seed_service(service, fleet)
    tickets: list[Ticket] = []
    started = time.perf_counter()
    async with EmbeddedBroker(port) as broker, contextlib.AsyncExitStack() as stack:
        rules_client = await stack.enter_async_context(
            aiomqtt.Client(broker.host, broker.port, identifier="demo-rules")
        )
        publisher = AlertPublisher(RuleEngine(load_pack("dressings")), rules_client, store)
        # The desk runs on simulated time: "now" is the instant of the latest alert.
        worker = ServiceWorker(
            WorkerSettings(host=broker.host, port=broker.port, client_id="demo-service",
                           mqtt_v5=False, tick_s=3600.0),
            service, clock=lambda: datetime_from_us(max(publisher.last_at_us, 1)),
            on_ticket=lambda ticket, _: tickets.append(ticket),
        )  # fmt: skip
        worker_task = asyncio.create_task(worker.run())
        stack.callback(worker_task.cancel)
        ingest = IngestWorker(
            IngestSettings(host=broker.host, port=broker.port, mqtt_v5=False), store,
            on_stored=publisher,
        )
        ingest_task = asyncio.create_task(ingest.run())
        stack.callback(ingest_task.cancel)
        await ingest.subscribed.wait()
        await worker.subscribed.wait()
        gateway_settings = GatewaySettings(
            gateway_id="demo-gw", outbox_path=workdir / "outbox.db",
            uplink=UplinkSettings(host=broker.host, port=broker.port),
            site_broker=SiteBrokerSettings(host=broker.host, port=broker.port, site="site-a"),
        )
        gateway = Gateway(gateway_settings)
        assert gateway.bridge is not None
        simulation = SimulatedFleet(fleet, ticks, site_broker=(broker.host, broker.port),
                                    start_after=gateway.bridge.subscribed)
        gateway.sources.insert(0, simulation)
        async with gateway:
            await _publish_malformed(broker.host, broker.port)
            await _follow(console, simulation, ingest, ticks, gateway)
        await _until(lambda: worker.alerts_received >= publisher.published, 10.0)
        await worker.drain()
        for task in (ingest_task, worker_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    seconds = time.perf_counter() - started
    # Show each ticket as it stands now (dispatched), not as it was when first opened.
    tickets = [t for t in (service.ticket(x.id) for x in tickets) if t is not None]
    console.print(ticket_table(tickets, service, SlaConfig()))
    service.close()
    count, value_sum = store.reading_checksum()
    result = DemoResult(
        devices=patches + equipment, produced=fleet.tally.readings, stored=count,
        value_sum_produced=fleet.tally.value_sum, value_sum_stored=value_sum,
        dead_letters=store.dead_letter_count(), seconds=seconds, db_path=db_path,
        alerts=publisher.published, tickets=tickets, service_db=service_db,
    )
    store.close()
    return result


async def _until(done: Callable[[], bool], seconds: float) -> None:
    # Polled: the counters live in other components and have no event to wait on.
    for _ in range(int(seconds / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)


def ticket_table(tickets: Sequence[Ticket], store: ServiceStore, sla: SlaConfig) -> Table:
    """The tickets the demo's alerts opened, with who was sent and why."""
    table = Table(title="service desk — tickets opened by alerts (simulated time, UTC)")
    for column in ("ticket", "device", "rule", "tier", "engineer", "dispatch reason",
                   "respond by", "resolve by"):  # fmt: skip
        table.add_column(column, overflow="fold")
    infected = {f.device_id for f in demo_faults() if f.kind is FaultKind.INFECTION}
    # The infected patch's tickets first: they are what the demo is about.
    for ticket in sorted(tickets, key=lambda t: (t.device_id not in infected, t.opened_at)):
        status = sla_status(ticket, ticket.last_change, sla)
        engineer = store.engineer(ticket.assignee) if ticket.assignee else None
        table.add_row(
            ticket.id[:10], ticket.device_id, (ticket.rule_id or "-").removeprefix("dressing."),
            str(ticket.tier),
            engineer.name if engineer else "— not dispatched —", ticket.dispatch_reason or "-",
            _when(status.respond.deadline), _when(status.resolve.deadline),
            style="bold" if ticket.device_id in infected else None,
        )  # fmt: skip
    return table


def _when(at: datetime | None) -> str:
    return at.strftime("%d %b %H:%M") if at else "-"


async def _publish_malformed(host: str, port: int) -> None:
    # A garbled upload, as a misbehaving gateway might send: it must land in dead letters.
    async with aiomqtt.Client(host, port, identifier="demo-bad-gateway") as client:
        await client.publish(batch_topic("bad-gw"), b'{"v": 1, "gateway_id": "bad-gw"', qos=1)


async def _follow(
    console: Console, simulation: SimulatedFleet, ingest: IngestWorker, ticks: int,
    gateway: Gateway,
) -> None:
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        sim = progress.add_task("simulated ticks", total=ticks, n="")
        stored = progress.add_task("readings stored", total=None, n="0")
        while True:
            produced = simulation.fleet.tally.readings
            n = int(ingest.counters.value("vigil_ingest_readings_stored_total"))
            progress.update(sim, completed=simulation.ticks_done, n=f"{simulation.ticks_done}")
            progress.update(stored, total=max(produced, 1), completed=n, n=f"{n:,}")
            if simulation.ticks_done == ticks and n >= produced:
                break
            await asyncio.sleep(0.1)
        await gateway.drained()


def summary_table(result: DemoResult) -> Table:
    """The demo's closing summary."""
    table = Table(title="vigil demo — embedded default (SQLite + in-process broker)")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("devices", f"{result.devices}")
    table.add_row("readings produced", f"{result.produced:,}")
    table.add_row("readings stored", f"{result.stored:,}")
    table.add_row("lost / duplicated", f"{result.produced - result.stored:,} / 0"
                  if result.stored <= result.produced else f"0 / {result.stored - result.produced}")
    table.add_row("value checksum match",
                  "yes" if abs(result.value_sum_produced - result.value_sum_stored) < 1e-3
                  else "NO")
    table.add_row("rate", f"{result.stored / result.seconds:,.0f} readings/s")
    table.add_row("dead letters", f"{result.dead_letters}")
    table.add_row("alerts published", f"{result.alerts}")
    table.add_row("tickets opened / dispatched",
                  f"{len(result.tickets)} / {sum(1 for t in result.tickets if t.assignee)}")
    table.add_row("database", str(result.db_path))
    return table
