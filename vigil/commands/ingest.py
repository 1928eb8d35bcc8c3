"""`vigil ingest …`: the ingest worker, with the rules in process unless told otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import aiomqtt
import typer
from rich.console import Console

from vigil.settings import VigilSettings

app = typer.Typer(help="The ingest worker.", no_args_is_help=True)
console = Console()


@app.command("run")
def ingest_run(
    rules: Annotated[
        bool,
        typer.Option(help="Run the rules on what is stored, in process ([rules] settings); "
                          "use --no-rules beside `vigil rules run` or with a shared group."),
    ] = True,
) -> None:
    """Run one ingest worker until interrupted."""
    from ingest.storage import open_store
    from ingest.worker import IngestWorker
    from rules.runtime import RuleRuntime, publish_through
    from vigil.commands.rules import load_rules, registry_from
    from vigil.stopping import run_until_stopped

    settings = VigilSettings()
    chosen = load_rules(None, None, settings) if rules else []
    registry = registry_from(settings.rules.registry_file) if rules else {}
    store = open_store(settings.ingest.storage_url)
    store.migrate()
    ingest = settings.ingest_settings()

    def publisher() -> aiomqtt.Client:
        # Its own connection: the ingest client's session only consumes.
        protocol = aiomqtt.ProtocolVersion.V5 if ingest.mqtt_v5 else aiomqtt.ProtocolVersion.V311
        return aiomqtt.Client(ingest.host, ingest.port, identifier=f"{ingest.client_id}-alerts",
                              protocol=protocol)

    async def main() -> None:
        if not rules:
            await IngestWorker(ingest, store).run()
            return
        async with RuleRuntime(chosen, registry, store, None,
                               settings.runtime_settings()) as runtime:
            link = asyncio.create_task(publish_through(runtime, publisher))
            try:
                await IngestWorker(ingest, store, on_stored=runtime.on_stored).run()
            finally:
                link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link

    with store:
        run_until_stopped(main())
