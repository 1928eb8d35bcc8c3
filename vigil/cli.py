"""The `vigil` command line: the composition root that wires every component together."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vigil.commands import (
    audit,
    broker,
    deadletters,
    devices,
    fhir,
    gateway,
    ingest,
    pki,
    retention,
    rules,
    service,
    sim,
    tokens,
    trace,
)

app = typer.Typer(
    help="vigil: telemetry gateway and remote-service backbone.", no_args_is_help=True
)
app.add_typer(sim.app, name="sim")
app.add_typer(gateway.app, name="gateway")
app.add_typer(ingest.app, name="ingest")
app.add_typer(rules.app, name="rules")
app.add_typer(service.app, name="service")
app.add_typer(audit.app, name="audit")
app.add_typer(deadletters.app, name="deadletters")
app.add_typer(devices.app, name="devices")
app.add_typer(pki.app, name="pki")
app.add_typer(broker.app, name="broker")
app.add_typer(tokens.app, name="tokens")
app.add_typer(retention.app, name="retention")
app.add_typer(fhir.app, name="fhir")
app.add_typer(devices.app, name="devices")
app.add_typer(trace.app, name="trace")

console = Console()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    patches: Annotated[int, typer.Option(help="Dressing patches to simulate.")] = 50,
    equipment: Annotated[int, typer.Option(help="Pieces of equipment to simulate.")] = 5,
    ticks: Annotated[int, typer.Option(help="Samples per device, one per simulated minute.")] = 360,
    port: Annotated[int, typer.Option(help="Loopback port for the embedded broker.")] = 18830,
    workdir: Annotated[Path, typer.Option(help="Where the SQLite files go.")] = Path("var/demo"),
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the web console over the results.")
    ] = False,
    http_port: Annotated[int, typer.Option(help="Loopback port of the console (--serve).")] = 8080,
) -> None:
    """Run the whole data path on the embedded default and print a summary."""
    from vigil.demo import run_demo, summary_table
    from vigil.demo_serve import console_url, serve_console

    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("*.db*"):
        stale.unlink()
    result = asyncio.run(
        run_demo(
            patches=patches,
            equipment=equipment,
            ticks=ticks,
            port=port,
            workdir=workdir,
            console=console,
            # Served data should look current: the simulated period then ends now.
            ends_now=serve,
        )
    )
    console.print(summary_table(result))
    if result.stored != result.produced:
        raise typer.Exit(1)
    if serve:
        serve_console(workdir, result.site, "127.0.0.1", http_port, console)
    else:
        url = console_url("127.0.0.1", http_port)
        console.print(f"Console: `vigil demo --serve` (make demo-serve) shows this at {url}")
