"""`make demo`: the whole data path on the embedded default, no servers to install.

simulated fleet → gateway (outbox, batches) → embedded MQTT broker → ingest → SQLite
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contract.topics import batch_topic
from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from ingest.storage import open_store
from ingest.worker import IngestSettings, IngestWorker
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec
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


def demo_faults() -> tuple[Fault, ...]:
    """The demo's scripted trouble: an infected wound, a detached patch, a mains sag."""
    return (
        Fault("patch-0003", FaultKind.INFECTION, start_s=2 * 3600),
        Fault("patch-0007", FaultKind.DETACH, start_s=3 * 3600),
        Fault("us-000", FaultKind.MAINS_SAG, start_s=4 * 3600, duration_s=1800),
    )


async def run_demo(
    *, patches: int = 50, equipment: int = 5, ticks: int = 360, seed: int = 7,
    port: int = 18830, workdir: Path | None = None, console: Console | None = None,
) -> DemoResult:
    """Run the scenario end to end and return the reconciliation."""
    console = console or Console()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    db_path = workdir / "vigil.db"
    fleet = Fleet(FleetSpec(seed=seed, patches=patches, equipment=equipment,
                            faults=demo_faults()))
    store = open_store(f"sqlite:///{db_path}")
    store.migrate()
    started = time.perf_counter()
    async with EmbeddedBroker(port) as broker, contextlib.AsyncExitStack() as stack:
        ingest = IngestWorker(
            IngestSettings(host=broker.host, port=broker.port, mqtt_v5=False), store
        )
        ingest_task = asyncio.create_task(ingest.run())
        stack.callback(ingest_task.cancel)
        await ingest.subscribed.wait()
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
        ingest_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest_task
    seconds = time.perf_counter() - started
    count, value_sum = store.reading_checksum()
    result = DemoResult(
        devices=patches + equipment, produced=fleet.tally.readings, stored=count,
        value_sum_produced=fleet.tally.value_sum, value_sum_stored=value_sum,
        dead_letters=store.dead_letter_count(), seconds=seconds, db_path=db_path,
    )
    store.close()
    return result


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
    table.add_row("database", str(result.db_path))
    return table
