"""`vigil gateway …`: the edge gateway."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from vigil.settings import VigilSettings

app = typer.Typer(help="The edge gateway.", no_args_is_help=True)
console = Console()


@app.command("run")
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


