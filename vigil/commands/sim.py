"""`vigil sim …`: the device simulator."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from vigil.settings import VigilSettings

app = typer.Typer(help="The device simulator.", no_args_is_help=True)
console = Console()


@app.command("run")
def sim_run() -> None:
    """Publish the equipment fleet's telemetry to the site broker (patches need a gateway)."""
    from simulator.fleet import Fleet, FleetSpec
    from simulator.runner import SimulatedFleet

    settings = VigilSettings()
    s = settings.simulator
    fleet = Fleet(
        FleetSpec(
            seed=s.seed,
            patches=0,
            equipment=s.equipment,
            tick_s=s.tick_s,
            site=settings.gateway.site,
        )
    )
    source = SimulatedFleet(
        fleet,
        s.ticks,
        s.tick_wall_s,
        site_broker=(settings.site_broker.host, settings.site_broker.port),
    )

    async def discard(_: object) -> None:
        return None

    asyncio.run(source.run(discard))
    console.print(f"published {fleet.tally.readings:,} equipment readings")
