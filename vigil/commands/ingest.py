"""`vigil ingest …`: the ingest worker."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from vigil.settings import VigilSettings

app = typer.Typer(help="The ingest worker.", no_args_is_help=True)
console = Console()


@app.command("run")
def ingest_run() -> None:
    """Run one ingest worker until interrupted."""
    from ingest.storage import open_store
    from ingest.worker import IngestWorker

    settings = VigilSettings()
    store = open_store(settings.ingest.storage_url)
    store.migrate()
    asyncio.run(IngestWorker(settings.ingest_settings(), store).run())
