"""The `vigil` command line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vigil.settings import VigilSettings

app = typer.Typer(help="vigil: telemetry gateway and remote-service backbone.",
                  no_args_is_help=True)
sim_app = typer.Typer(help="The device simulator.", no_args_is_help=True)
gateway_app = typer.Typer(help="The edge gateway.", no_args_is_help=True)
ingest_app = typer.Typer(help="The ingest worker.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
app.add_typer(gateway_app, name="gateway")
app.add_typer(ingest_app, name="ingest")

console = Console()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def demo(
    patches: Annotated[int, typer.Option(help="Dressing patches to simulate.")] = 50,
    equipment: Annotated[int, typer.Option(help="Pieces of equipment to simulate.")] = 5,
    ticks: Annotated[int, typer.Option(help="Samples per device, one per simulated minute.")] = 360,
    port: Annotated[int, typer.Option(help="Loopback port for the embedded broker.")] = 18830,
    workdir: Annotated[Path, typer.Option(help="Where the SQLite files go.")] = Path("var/demo"),
) -> None:
    """Run the whole data path on the embedded default and print a summary."""
    from vigil.demo import run_demo, summary_table

    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.db*"):
        stale.unlink()
    result = asyncio.run(run_demo(patches=patches, equipment=equipment, ticks=ticks, port=port,
                                  workdir=workdir, console=console))
    console.print(summary_table(result))
    if result.stored != result.produced:
        raise typer.Exit(1)


@sim_app.command("run")
def sim_run() -> None:
    """Publish the equipment fleet's telemetry to the site broker (patches need a gateway)."""
    from simulator.fleet import Fleet, FleetSpec
    from simulator.runner import SimulatedFleet

    settings = VigilSettings()
    s = settings.simulator
    fleet = Fleet(FleetSpec(seed=s.seed, patches=0, equipment=s.equipment, tick_s=s.tick_s,
                            site=settings.gateway.site))
    source = SimulatedFleet(fleet, s.ticks, s.tick_wall_s,
                            site_broker=(settings.site_broker.host, settings.site_broker.port))

    async def discard(_: object) -> None:
        return None

    asyncio.run(source.run(discard))
    console.print(f"published {fleet.tally.readings:,} equipment readings")


@gateway_app.command("run")
def gateway_run(
    simulate_patches: Annotated[
        int, typer.Option(help="Also read this many simulated patches.")
    ] = 0,
) -> None:
    """Run the gateway until interrupted."""
    from gateway.app import Gateway
    from simulator.fleet import Fleet, FleetSpec
    from simulator.runner import SimulatedFleet

    settings = VigilSettings()
    sources = []
    if simulate_patches:
        s = settings.simulator
        fleet = Fleet(FleetSpec(seed=s.seed, patches=simulate_patches, equipment=0,
                                tick_s=s.tick_s))
        sources.append(SimulatedFleet(fleet, s.ticks, s.tick_wall_s))

    async def main() -> None:
        async with Gateway(settings.gateway_settings(), sources):
            await asyncio.Event().wait()

    asyncio.run(main())


@ingest_app.command("run")
def ingest_run() -> None:
    """Run one ingest worker until interrupted."""
    from ingest.storage import open_store
    from ingest.worker import IngestWorker

    settings = VigilSettings()
    store = open_store(settings.ingest.storage_url)
    store.migrate()
    asyncio.run(IngestWorker(settings.ingest_settings(), store).run())
