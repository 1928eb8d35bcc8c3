"""`make demo`: the whole data path on the embedded default, no servers to install.

simulated fleet → gateway (outbox, batches) → embedded MQTT broker → ingest → SQLite
→ rules (RuleRuntime, in process) → alerts on MQTT → service worker → ticket dispatched to the
right engineer.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

import aiomqtt
from rich import box
from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from contract import DeviceKind
from contract.topics import batch_topic
from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from infra.telemetry import ReadingStore, open_store
from infra.time_us import datetime_from_us
from ingest.worker import IngestSettings, IngestWorker
from rules import AnyRule, load_pack
from rules.runtime import RuleRuntime, RuntimeSettings
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
    site: str = ""


# The infection starts once the wound's temperature baseline is learnt (24 h after the first
# 2 h of the patch): the infection rules compare with the wound's own history.
DEMO_INFECTION_START_S = 30 * 3600.0


def demo_faults() -> tuple[Fault, ...]:
    """The demo's scripted trouble: an infected wound, a detached patch, a mains sag."""
    return (
        Fault("patch-0003", FaultKind.INFECTION, start_s=DEMO_INFECTION_START_S),
        Fault("patch-0007", FaultKind.DETACH, start_s=3 * 3600),
        Fault("us-000", FaultKind.MAINS_SAG, start_s=4 * 3600, duration_s=1800),
    )


# Simulated seconds per tick: ten minutes, so 360 ticks cover 60 h: the wound's baseline is
# learnt by 26 h, and an infection starting at 30 h is a confirmed (critical) alert by ~40 h.
DEMO_TICK_S = 600.0
DEMO_REGION = "north"
DEMO_RULES_TICK_WALL_S = 0.5


def demo_installed_base(
    fleet: Fleet, site: str
) -> tuple[Site, list[Device], list[Patient], list[Engineer]]:
    """The service desk's view of the demo fleet: one hospital, home kits, four engineers."""
    installed = date(2025, 6, 1)
    hospital = Site(id=site, hospital="St. Demo Hospital", region=DEMO_REGION)
    devices = [
        Device(
            id=p.device_id,
            kind=DeviceKind.PATCH,
            model="VP-1",
            serial=f"SN-{p.device_id}",
            lot="L2025-06",
            installed_on=installed,
            site_id=site,
            patient=f"pt-{p.device_id.removeprefix('patch-')}",
        )
        for p in fleet.patches
    ] + [
        Device(
            id=e.device_id,
            kind=equipment_kind(i),
            model=f"{equipment_kind(i)}-X",
            serial=f"SN-{e.device_id}",
            installed_on=installed,
            site_id=site,
        )
        for i, e in enumerate(fleet.equipment)
    ]
    patients = [Patient(id=d.patient, site_id=site, kit=(d.id,)) for d in devices if d.patient]
    engineers = [
        Engineer(
            id="eng-ana",
            name="Ana (wound care, north)",
            region=DEMO_REGION,
            skills=frozenset({DeviceKind.PATCH}),
            capacity=12,
            supervisor="sup-north",
        ),
        Engineer(
            id="eng-ben",
            name="Ben (wound care, north)",
            region=DEMO_REGION,
            skills=frozenset({DeviceKind.PATCH}),
            capacity=6,
            supervisor="sup-north",
        ),
        Engineer(
            id="eng-cem",
            name="Cem (imaging, north)",
            region=DEMO_REGION,
            skills=frozenset({DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE}),
        ),
        Engineer(
            id="eng-dia",
            name="Dia (wound care, south)",
            region="south",
            skills=frozenset({DeviceKind.PATCH}),
        ),
    ]
    return hospital, devices, patients, engineers


def demo_rules() -> list[AnyRule]:
    """Both shipped packs, less equipment silence: the demo's equipment readings arrive through
    the site broker behind the patches' simulated clock, which would look like silence."""
    return [
        *load_pack("dressings"),
        *(rule for rule in load_pack("equipment") if rule.kind != "silence"),
    ]


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


async def run_demo(
    *,
    patches: int = 50,
    equipment: int = 5,
    ticks: int = 360,
    seed: int = 7,
    port: int = 18830,
    workdir: Path | None = None,
    console: Console | None = None,
    ends_now: bool = False,
) -> DemoResult:
    """Run the scenario end to end and return the reconciliation (``ends_now``: the simulated
    period ends at the current time rather than a month ago, for serving the results)."""
    console = console or Console()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    db_path = workdir / "vigil.db"
    spec = FleetSpec(
        seed=seed, patches=patches, equipment=equipment, faults=demo_faults(), tick_s=DEMO_TICK_S
    )
    if ends_now:
        spec = replace(spec, start_us=time.time_ns() // 1000 - round(ticks * DEMO_TICK_S * 1e6))
    fleet = Fleet(spec)
    store = open_store(f"sqlite:///{db_path}")
    store.migrate()
    service_db = workdir / "service.db"
    service = SqliteStore(service_db)
    seed_service(service, fleet)
    tickets: list[Ticket] = []
    started = time.perf_counter()
    async with EmbeddedBroker(port) as broker, contextlib.AsyncExitStack() as stack:
        backbone = await _backbone(stack, broker, store, service, tickets)
        await _run_site(console, broker, fleet, ticks, workdir, backbone.ingest)
        runtime, worker = backbone.runtime, backbone.worker
        await _until(lambda: runtime.counters.readings >= fleet.tally.readings, 10.0)
        await runtime.tick()  # the silence check at the end of the simulated period
        await _until(lambda: worker.alerts_received >= runtime.counters.published, 10.0)
        await worker.drain()
        await backbone.stop()
    seconds = time.perf_counter() - started
    # Show each ticket as it stands now (dispatched), not as it was when first opened.
    tickets = [t for t in (service.ticket(x.id) for x in tickets) if t is not None]
    console.print(ticket_report(tickets, service, SlaConfig()))
    service.close()
    count, value_sum = store.reading_checksum()
    result = DemoResult(
        devices=patches + equipment,
        produced=fleet.tally.readings,
        stored=count,
        value_sum_produced=fleet.tally.value_sum,
        value_sum_stored=value_sum,
        dead_letters=store.dead_letter_count(),
        seconds=seconds,
        db_path=db_path,
        alerts=backbone.runtime.counters.published,
        tickets=tickets,
        service_db=service_db,
        site=spec.site,
    )
    store.close()
    return result


@dataclass
class Backbone:
    """The demo's server side: rules, the ticket worker and ingest, running."""

    runtime: RuleRuntime
    worker: ServiceWorker
    ingest: IngestWorker
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        """Cancel the workers and wait until they are gone."""
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _backbone(
    stack: contextlib.AsyncExitStack,
    broker: EmbeddedBroker,
    store: ReadingStore,
    service: SqliteStore,
    tickets: list[Ticket],
) -> Backbone:
    """Start rules, the ticket worker and ingest on the embedded broker."""
    rules_client = await stack.enter_async_context(
        aiomqtt.Client(broker.host, broker.port, identifier="demo-rules")
    )
    # Simulated time runs ~50,000× faster than the wall clock, so silence rules tick on the
    # newest reading seen rather than on "now".
    settings = RuntimeSettings(tick_every_s=DEMO_RULES_TICK_WALL_S, data_clock=True)
    runtime = await stack.enter_async_context(
        RuleRuntime(demo_rules(), None, store, rules_client, settings)
    )
    # The desk runs on simulated time too: "now" is the newest reading the rules have seen.
    worker = ServiceWorker(
        WorkerSettings(
            host=broker.host,
            port=broker.port,
            client_id="demo-service",
            mqtt_v5=False,
            tick_s=3600.0,
        ),
        service,
        clock=lambda: datetime_from_us(max(runtime.newest_us, 1)),
        on_ticket=lambda ticket, _: tickets.append(ticket),
    )
    # The fleet's clock is simulated (from a month ago, ~50,000x the wall clock): a long run
    # (--ticks) would reach past the wall clock's timestamp window, so neither end applies it.
    ingest_settings = IngestSettings(
        host=broker.host,
        port=broker.port,
        mqtt_v5=False,
        max_reading_age_s=None,
        max_clock_skew_s=None,
    )
    ingest = IngestWorker(ingest_settings, store, on_stored=runtime.on_stored)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(ingest.run())]
    for task in tasks:
        stack.callback(task.cancel)
    await ingest.subscribed.wait()
    await worker.subscribed.wait()
    return Backbone(runtime, worker, ingest, tasks)


async def _run_site(
    console: Console,
    broker: EmbeddedBroker,
    fleet: Fleet,
    ticks: int,
    workdir: Path,
    ingest: IngestWorker,
) -> None:
    """The hospital side: the simulated fleet through a real gateway, until it is drained."""
    gateway_settings = GatewaySettings(
        gateway_id="demo-gw",
        outbox_path=workdir / "outbox.db",
        uplink=UplinkSettings(host=broker.host, port=broker.port),
        site_broker=SiteBrokerSettings(host=broker.host, port=broker.port, site="site-a"),
        max_reading_age_s=None,
        max_clock_skew_s=None,
    )
    gateway = Gateway(gateway_settings)
    assert gateway.bridge is not None
    simulation = SimulatedFleet(
        fleet,
        ticks,
        site_broker=(broker.host, broker.port),
        start_after=gateway.bridge.subscribed,
    )
    gateway.sources.insert(0, simulation)
    async with gateway:
        await _publish_malformed(broker.host, broker.port)
        await _follow(console, simulation, ingest, ticks, gateway)


async def _until(done: Callable[[], bool], seconds: float) -> None:
    # Polled: the counters live in other components and have no event to wait on.
    for _ in range(int(seconds / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)


def ticket_report(tickets: Sequence[Ticket], store: ServiceStore, sla: SlaConfig) -> Group:
    """The tickets the demo's alerts opened, then who was sent to each and why.

    Narrow enough for an 80-column terminal: the long dispatch reasons go below the table,
    numbered like its rows, instead of in a column wrapped a word per line.
    """
    table = Table(
        title="service desk — tickets opened by alerts (simulated time, UTC)", box=box.SIMPLE_HEAD
    )
    for column in ("#", "device", "rule", "tier", "engineer", "respond by"):
        table.add_column(
            column,
            justify="right" if column == "#" else "left",
            overflow="fold",
            no_wrap=column != "rule",
        )
    why = Table.grid(padding=(0, 1))
    why.add_column(justify="right", no_wrap=True)
    why.add_column(overflow="fold")
    infected = {f.device_id for f in demo_faults() if f.kind is FaultKind.INFECTION}
    # The infected patch's tickets first: they are what the demo is about.
    for n, ticket in enumerate(
        sorted(tickets, key=lambda t: (t.device_id not in infected, t.opened_at)), start=1
    ):
        status = sla_status(ticket, ticket.last_change, sla)
        engineer = store.engineer(ticket.assignee) if ticket.assignee else None
        # A pack's rules share its prefix; the rest of the id is what tells them apart.
        rule = (ticket.rule_id or "-").split(".", 1)[-1]
        style = "bold" if ticket.device_id in infected else ""
        table.add_row(
            str(n),
            ticket.device_id,
            rule,
            str(ticket.tier),
            engineer.name.split(" (")[0] if engineer else "—",
            _when(status.respond.deadline),
            style=style,
        )
        reason = Text(f"{ticket.id}, resolve by {_when(status.resolve.deadline)} → ")
        reason.append(engineer.name if engineer else "not dispatched", style="bold")
        reason.append(f": {ticket.dispatch_reason}" if ticket.dispatch_reason else "")
        why.add_row(Text(f"{n}.", style=style), reason)
    return Group(table, Text("Who was sent, and why:", style="italic"), why, Text())


def _when(at: datetime | None) -> str:
    return at.strftime("%d %b %H:%M") if at else "-"


async def _publish_malformed(host: str, port: int) -> None:
    # A garbled upload, as a misbehaving gateway might send: it must land in dead letters.
    async with aiomqtt.Client(host, port, identifier="demo-bad-gateway") as client:
        await client.publish(batch_topic("bad-gw"), b'{"v": 1, "gateway_id": "bad-gw"', qos=1)


async def _follow(
    console: Console,
    simulation: SimulatedFleet,
    ingest: IngestWorker,
    ticks: int,
    gateway: Gateway,
) -> None:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[n]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
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
    table = Table(title="vigil demo — SQLite + in-process broker")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("devices", f"{result.devices}")
    table.add_row("readings produced", f"{result.produced:,}")
    table.add_row("readings stored", f"{result.stored:,}")
    table.add_row(
        "lost / duplicated",
        f"{result.produced - result.stored:,} / 0"
        if result.stored <= result.produced
        else f"0 / {result.stored - result.produced}",
    )
    table.add_row(
        "value checksum match",
        "yes" if abs(result.value_sum_produced - result.value_sum_stored) < 1e-3 else "NO",
    )
    table.add_row("rate", f"{result.stored / result.seconds:,.0f} readings/s")
    table.add_row("dead letters", f"{result.dead_letters}")
    table.add_row("alerts published", f"{result.alerts}")
    table.add_row(
        "tickets opened / dispatched",
        f"{len(result.tickets)} / {sum(1 for t in result.tickets if t.assignee)}",
    )
    table.add_row("database", str(result.db_path))
    return table
