"""The `vigil` command line: the composition root that wires every component together."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infra.logs import LogFormat
from vigil.commands import (
    audit,
    bootstrap,
    broker,
    contract,
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

# Help texts are plain text: "[default: service.store_url]" and "[rules]" are words to show,
# not rich markup (which silently swallowed them). Every sub-app inherits this.
app = typer.Typer(
    help="vigil: telemetry gateway and remote-service backbone.",
    no_args_is_help=True,
    rich_markup_mode=None,
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
app.add_typer(contract.app, name="contract")
app.command("bootstrap")(bootstrap.bootstrap)

console = Console()


class LogFormatChoice(StrEnum):
    """The --log-format choices."""

    TEXT = "text"
    JSON = "json"


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log at INFO (same as --log-level INFO).")
    ] = False,
    log_format: Annotated[
        LogFormatChoice | None,
        typer.Option(
            help="Log lines as text, or as one JSON object each [default: logging.format].",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="DEBUG, INFO, WARNING or ERROR [default: logging.level]."),
    ] = None,
) -> None:
    from infra.logs import configure, level_of

    fmt, level = _logging_settings()
    if verbose:
        level = "INFO"
    try:
        configure(level_of(log_level or level), log_format.value if log_format else fmt)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from None


def _logging_settings() -> tuple[LogFormat, str]:
    """[logging] format and level; the defaults if the settings do not load (the command
    that needs them reports why)."""
    from vigil.settings import LoggingConfig, VigilSettings

    try:
        config = VigilSettings().logging
    except Exception:
        config = LoggingConfig()
    return config.format, config.level


@app.command()
def demo(
    patches: Annotated[int, typer.Option(help="Dressing patches to simulate.")] = 50,
    equipment: Annotated[int, typer.Option(help="Pieces of equipment to simulate.")] = 5,
    ticks: Annotated[int, typer.Option(help="Samples per device, one per simulated minute.")] = 360,
    port: Annotated[int, typer.Option(help="Loopback port for the embedded broker.")] = 18830,
    workdir: Annotated[Path, typer.Option(help="Where the SQLite files go.")] = Path("var/demo"),
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then serve the web console over the results, the broker and data path live.",
        ),
    ] = False,
    http_port: Annotated[int, typer.Option(help="Loopback port of the console (--serve).")] = 8080,
) -> None:
    """Run the whole data path on the embedded default and print a summary."""
    from vigil.demo import run_demo, summary_table
    from vigil.demo_live import LiveSite
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
        live = LiveSite(broker_port=port, site=result.site)
        serve_console(workdir, live, "127.0.0.1", http_port, console)
    else:
        url = console_url("127.0.0.1", http_port)
        console.print(f"Console: `vigil demo --serve` (make demo-serve) shows this at {url}")
