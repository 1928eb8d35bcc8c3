"""A national service network for ``bench_service_scale``: generated, then seeded into the stores.

Seeding goes through the store with the code paths the API and the worker use — not through
HTTP, which on this 2-core machine would take hours for half a million audited writes:

- sites, devices, engineers: ``desk.put_installed`` (what ``PUT /sites|devices|engineers`` calls);
- alert tickets: ``desk.intake_alert`` (the worker's intake: dedupe, open, auto-dispatch);
- manual tickets: ``desk.open_ticket`` (what ``POST /tickets`` calls);
- every lifecycle step: ``desk.apply`` (what ``POST /tickets/{id}/events`` calls);

grouped into transactions of a few hundred calls (``store.atomic()``), so commits do not
dominate. Readings and alert events go to the reading store in batches, as ingest writes them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contract import (
    AlertEvent,
    AlertTransition,
    Batch,
    DeviceKind,
    Reading,
    Severity,
    WoundBaseline,
)
from infra.telemetry.base import ReadingStore
from infra.time_us import us_from_datetime
from service import desk
from service.lifecycle import Accept, Arrive, Close, Event, FollowUp, Pause, Resolve, SignOff
from service.model import Device, Engineer, Location, Site, Tier
from service.sla import SlaConfig
from service.store import ServiceStore

GROUP = 300  # calls per transaction while seeding
TEMP_RULE, PH_RULE = "dressing.temp.rise", "dressing.ph.rise"  # the pack's baseline rules
REGIONS = 10
PATCH_METRICS = (("wound_temp", "degC"), ("skin_temp", "degC"), ("wound_ph", "pH"))
EQUIPMENT_METRICS = (("motor_temp", "degC"), ("vibration", "mm/s"))
BIG_WARD = "W1"


@dataclass(frozen=True, slots=True)
class Shape:
    """How big a network is."""

    sites: int
    devices: int
    engineers: int
    tickets: int
    open: int
    readings: int
    big_site: int  # devices of the biggest hospital
    ward: int  # patches in its ward W1

    def scaled(self, factor: float) -> Shape:
        """This shape times ``factor`` (at least one of each)."""
        return Shape(
            *(
                max(1, round(v * factor))
                for v in (
                    self.sites,
                    self.devices,
                    self.engineers,
                    self.tickets,
                    self.open,
                    self.readings,
                    self.big_site,
                    self.ward,
                )
            )
        )


# The network: 500 hospitals, 100,000 devices, 300 engineers, 50,000 tickets (1,285 open).
FULL = Shape(500, 100_000, 300, 50_000, 1_285, 3_100_000, 10_600, 10_000)


@dataclass(frozen=True, slots=True)
class Network:
    """The generated installed base and the ids the benchmark asks about."""

    shape: Shape
    now: datetime
    sites: list[Site]
    devices: list[Device]
    engineers: list[Engineer]

    @property
    def big_site(self) -> str:
        """The biggest hospital (with the 10,000-patch ward)."""
        return self.sites[0].id

    @property
    def typical_site(self) -> str:
        """A hospital of about average size."""
        return self.sites[len(self.sites) // 2].id


def generate(shape: Shape, now: datetime, seed: int = 13) -> Network:
    """The sites, devices and engineers of a network of ``shape``, as of ``now``."""
    rng = random.Random(seed)
    regions = min(REGIONS, shape.engineers)  # every region has engineers
    sites = [
        Site(id=f"S{n:04d}", hospital=f"Hospital {n}", region=f"R{n % regions}")
        for n in range(shape.sites)
    ]
    engineers = [
        Engineer(
            id=f"E{n:04d}",
            name=f"Engineer {n}",
            region=f"R{n % regions}",
            skills=frozenset(DeviceKind),
            capacity=50,
            supervisor=f"E{(n // 30) * 30:04d}",
        )
        for n in range(shape.engineers)
    ]
    devices = list(_devices(shape, sites, now, rng))
    return Network(shape, now, sites, devices, engineers)


def _devices(
    shape: Shape, sites: list[Site], now: datetime, rng: random.Random
) -> Iterator[Device]:
    """The big site first (its ward W1 of patches, then equipment), the rest spread evenly."""
    today = now.date()
    rest = max(shape.devices - shape.big_site, 0)
    per_site = [shape.big_site] + [rest // max(len(sites) - 1, 1)] * (len(sites) - 1)
    n = 0
    for site, count in zip(sites, per_site, strict=True):
        for i in range(count):
            patch = (site.id == sites[0].id and i < shape.ward) or rng.random() < 0.8
            kind = (
                DeviceKind.PATCH
                if patch
                else rng.choice([DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE])
            )
            ward = BIG_WARD if site.id == sites[0].id and i < shape.ward else f"W{2 + i % 20}"
            yield Device(
                id=f"D{n:06d}",
                kind=kind,
                model=("VP-1" if patch else f"{kind.value[:3].upper()}-{100 + n % 4 * 100}"),
                serial=f"SN{n:06d}",
                lot=f"L{n % 50}",
                installed_on=today - timedelta(days=rng.randrange(30, 2000)),
                # Warranties end outside the notice window, but for a few that enter it today.
                warranty_end=None if patch else today + timedelta(days=rng.choice([-400, 400])),
                site_id=site.id,
                location=Location(ward=ward, room=str(i % 40)),
                patient=f"P{n:06d}" if patch and n % 3 == 0 else None,
                last_inspection=None if patch else today - timedelta(days=rng.randrange(0, 80)),
            )
            n += 1


def seed_installed(store: ServiceStore, network: Network, progress: Callable[[str], None]) -> None:
    """Sites, engineers and devices, each through ``desk.put_installed`` (audited)."""
    at = network.now - timedelta(days=800)
    items = [*network.sites, *network.engineers, *network.devices]
    for first in range(0, len(items), GROUP):
        with store.atomic():
            for item in items[first : first + GROUP]:
                desk.put_installed(store, item, "admin:seed", at)
        if first % 20_000 == 0:
            progress(f"installed {first:,}/{len(items):,}")


def _walk(rng: random.Random, opened: datetime, closed: bool) -> list[tuple[Event, datetime]]:
    """The lifecycle steps of a ticket opened at ``opened``: all of them, or some (still open)."""
    steps: list[tuple[Event, datetime]] = [
        (Accept(), opened + timedelta(minutes=rng.randrange(10, 150))),
        (Arrive(), opened + timedelta(hours=rng.uniform(3, 20))),
        (
            Resolve("probe cable", "replaced", ("P-100",)),
            opened + timedelta(hours=rng.uniform(21, 60)),
        ),
        (SignOff("Dr. Chen", b"report"), opened + timedelta(days=3)),
        (FollowUp(rng.randrange(3, 6)), opened + timedelta(days=4)),
        (Close(), opened + timedelta(days=5)),
    ]
    if closed:
        return steps
    keep = rng.choice([0, 0, 1, 1, 2, 3])
    taken = steps[:keep]
    if keep == 3:  # on site but waiting for the customer instead of resolved
        taken = [*steps[:2], (Pause("access"), steps[1][1] + timedelta(minutes=30))]
    return taken


def seed_tickets(
    store: ServiceStore, network: Network, sla: SlaConfig, progress: Callable[[str], None]
) -> list[AlertEvent]:
    """Tickets over two years (the last ``open`` ones still open); the alerts that opened them."""
    rng = random.Random(7)
    shape, now = network.shape, network.now
    closed = shape.tickets - shape.open
    alerts: list[AlertEvent] = []
    for first in range(0, shape.tickets, GROUP):
        with store.atomic():
            for n in range(first, min(first + GROUP, shape.tickets)):
                if n < closed:
                    opened = now - timedelta(days=730) + timedelta(days=724 * n / closed)
                else:
                    opened = now - timedelta(hours=rng.uniform(4, 72))
                device = rng.choice(network.devices)
                ticket_id = _open(store, device, opened, n, sla, alerts)
                for event, at in _walk(rng, opened, n < closed):
                    # An open ticket's steps all lie in the past.
                    at = at if n < closed else min(at, now - timedelta(minutes=1))
                    desk.apply(store, ticket_id, event, "engineer:seed", at)
        if first % 5_000 == 0:
            progress(f"tickets {first:,}/{shape.tickets:,}")
    return alerts


def _open(
    store: ServiceStore,
    device: Device,
    opened: datetime,
    n: int,
    sla: SlaConfig,
    alerts: list[AlertEvent],
) -> str:
    """Open ticket ``n`` on ``device``: by an alert (the worker's intake) or by a person."""
    if n % 10 < 6:
        alert = AlertEvent(
            device_id=device.id,
            rule_id=f"rule.{n % 7}",
            severity=Severity.CRITICAL if n % 3 == 0 else Severity.WARNING,
            transition=AlertTransition.RAISED,
            at_us=us_from_datetime(opened),
            message="fault",
        )
        ticket, _ = desk.intake_alert(store, alert, opened, sla)
        assert ticket is not None
        alerts.append(alert)
        return ticket.id
    tier = Tier.URGENT if n % 4 == 0 else Tier.GENERAL
    made = desk.open_ticket(
        store, device.id, tier, "no image", "hospital:seed", f"M{n:07d}", opened
    )
    return made.id


def seed_due_work(store: ServiceStore, network: Network, sla: SlaConfig, count: int) -> None:
    """A few urgent tickets unaccepted past their respond window: the next tick escalates them."""
    with store.atomic():
        for n, device in enumerate(network.devices[-count:]):
            alert = AlertEvent(
                device_id=device.id,
                rule_id="rule.overdue",
                severity=Severity.CRITICAL,
                transition=AlertTransition.RAISED,
                at_us=us_from_datetime(network.now - timedelta(hours=3, minutes=n)),
            )
            desk.intake_alert(store, alert, network.now - timedelta(hours=3), sla)


def seed_readings(
    readings: ReadingStore,
    network: Network,
    alerts: list[AlertEvent],
    progress: Callable[[str], None],
) -> None:
    """About ``shape.readings`` readings spread over the devices, the last hour; the alerts."""
    per_device = max(1, network.shape.readings // max(len(network.devices), 1))
    end_us = us_from_datetime(network.now)
    batch: list[Reading] = []
    seq = 0
    for device in network.devices:
        metrics = PATCH_METRICS if device.kind is DeviceKind.PATCH else EQUIPMENT_METRICS
        for i in range(per_device):
            metric, unit = metrics[i % len(metrics)]
            ts = end_us - (per_device - i) * 60_000_000
            batch.append(Reading(device.id, metric, 30.0 + i % 7, unit, ts, i))
        if len(batch) >= 20_000:
            readings.store_batches([Batch("seed", seq, tuple(batch))])
            seq, batch = seq + 1, []
            if seq % 25 == 0:
                progress(f"readings {seq * 20_000:,}")
    if batch:
        readings.store_batches([Batch("seed", seq, tuple(batch))])
    for first in range(0, len(alerts), 10_000):
        readings.store_alert_events(alerts[first : first + 10_000])
    readings.store_baselines(_baselines(network, end_us))


def _baselines(network: Network, at_us: int) -> list[WoundBaseline]:
    """Every patch's two learnt baselines, as the rules publish them (the boards show them)."""
    rows: list[WoundBaseline] = []
    for n, device in enumerate(network.devices):
        if device.kind is DeviceKind.PATCH:
            rise = (n % 13) / 10 - 0.4
            rows.append(WoundBaseline(device.id, TEMP_RULE, "wound_temp", 33.0, 33.0 + rise, at_us))
            rows.append(WoundBaseline(device.id, PH_RULE, "wound_ph", 7.1, 7.1 + rise / 4, at_us))
    return rows


def timed(what: str, work: Callable[[], object], log: Callable[[str], None]) -> float:
    """Run ``work``; log and return how long it took."""
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    log(f"{what}: {took:,.1f} s")
    return took


def bench_now() -> datetime:
    """The instant the seeded network is "now" (the wall clock, so the API's clock agrees)."""
    return datetime.now(UTC).replace(microsecond=0)
