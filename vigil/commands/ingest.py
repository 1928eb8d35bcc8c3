"""`vigil ingest …`: the ingest worker, with the rules in process unless told otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any

import aiomqtt
import typer
from rich.console import Console

from infra.logs import show_start_lines
from vigil.commands.observe import chosen_port, metrics_endpoint, metrics_port_option
from vigil.settings import VigilSettings
from vigil.startup import startup_files

if TYPE_CHECKING:
    from infra.retention import Pruned
    from infra.telemetry import ReadingStore
    from ingest.worker import StoredHook

app = typer.Typer(help="The ingest worker.", no_args_is_help=True)
console = Console()
log = logging.getLogger(__name__)


@app.command("run")
def ingest_run(
    rules: Annotated[
        bool,
        typer.Option(
            help="Run the rules on what is stored, in process ([rules] settings); "
            "use --no-rules beside `vigil rules run` or with a shared group."
        ),
    ] = True,
    replica: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="This worker's replica number in its shared group; client id "
            "vigil-ingest-<replica> unless ingest.client_id is set [default: ingest.replica].",
        ),
    ] = None,
    metrics_port: Annotated[int | None, metrics_port_option("ingest_port")] = None,
) -> None:
    """Run one ingest worker until interrupted."""
    show_start_lines()  # a long-running process: say what it connects to, at any level
    from infra.malloc import tune_malloc

    tune_malloc()  # before any worker thread: RSS stays flat under sustained load
    from prometheus_client import CollectorRegistry

    from infra.installed_base import InstalledBaseError, InstalledBaseFile
    from infra.logs import mask_url, started
    from infra.mqtt_tls import tls_context
    from ingest import metrics
    from ingest.counters import IngestCounters
    from ingest.worker import IngestWorker
    from rules import metrics as rules_metrics
    from rules.runtime import RuleRuntime, publish_through
    from vigil.commands.rules import load_rules, registry_from
    from vigil.stopping import run_until_stopped

    # Merged into the [ingest] section from the file and the environment, over both.
    overrides: dict[str, Any] = {} if replica is None else {"ingest": {"replica": replica}}
    settings = VigilSettings(**overrides)
    with startup_files("ingest run", InstalledBaseError):
        ingest = settings.ingest_settings()
        path = ingest.installed_base_file
        installed = None if path is None else InstalledBaseFile(path)
    if installed is None:
        log.warning(
            "no [ingest] installed_base_file: readings are not checked against the installed "
            "base, so any gateway may report any device (see `vigil devices export-registry`)"
        )
    chosen = load_rules(None, None, settings) if rules else []
    registry = registry_from(settings.rules.registry_file) if rules else {}
    store = _open_when_reachable(settings.ingest.storage_url)
    started("ingest", "storage", url=mask_url(settings.ingest.storage_url), rules=rules)
    # One registry for the process: the worker's counters, its loop, and the in-process rules.
    exported = CollectorRegistry()
    counters = IngestCounters(exported)
    writes = metrics.timed_store(store, exported)

    def publisher() -> aiomqtt.Client:
        # Its own connection: the ingest client's session only consumes.
        protocol = aiomqtt.ProtocolVersion.V5 if ingest.mqtt_v5 else aiomqtt.ProtocolVersion.V311
        return aiomqtt.Client(
            ingest.host,
            ingest.port,
            identifier=f"{ingest.client_id}-alerts",
            protocol=protocol,
            tls_context=tls_context(ingest.tls),
        )

    def worker(on_stored: StoredHook | None = None) -> IngestWorker:
        made = IngestWorker(ingest, writes, counters, on_stored=on_stored, installed_base=installed)
        metrics.instrument(made, exported)
        return made

    async def main() -> None:
        async with _pruning(settings):
            await work()

    async def work() -> None:
        if not rules:
            await worker().run()
            return
        async with RuleRuntime(
            chosen, registry, store, None, settings.runtime_settings()
        ) as runtime:
            rules_metrics.register(exported, runtime, store=store)
            started(
                "ingest",
                "publishing alerts",
                broker=f"{ingest.host}:{ingest.port}",
                tls=ingest.tls is not None,
                client_id=f"{ingest.client_id}-alerts",
                rules=len(chosen),
            )
            link = asyncio.create_task(publish_through(runtime, publisher))
            try:
                await worker(runtime.on_stored).run()
            finally:
                link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link

    port = chosen_port(metrics_port, settings.metrics.ingest_port)
    with store, metrics_endpoint("ingest", exported, port, settings.metrics.host):
        run_until_stopped(main())


def _pruning(settings: VigilSettings) -> contextlib.AbstractAsyncContextManager[None]:
    """Prune the telemetry store every [retention] interval_s while the block runs.

    Each prune opens its own connection, so a long one never holds up ingest's writes (SQLite
    prunes in short transactions; TimescaleDB drops whole chunks).
    """
    from infra.retention import pruning
    from infra.telemetry import open_store
    from infra.telemetry.retention import prune_telemetry
    from infra.time_us import now_us

    url, policy = settings.ingest.storage_url, settings.retention_policy()

    def prune() -> list[Pruned]:
        with open_store(url) as store:
            return prune_telemetry(store, policy, now_us())

    return pruning(prune, policy.interval_s, "telemetry")


def _open_when_reachable(url: str, backoff_max_s: float = 30.0) -> ReadingStore:
    """Open and migrate the store, waiting out a database that is not up yet (e.g. at boot)."""
    from infra.telemetry import StorageUnavailable, open_store

    backoff = 0.5
    while True:
        try:
            store = open_store(url)
            store.migrate()
            return store
        except StorageUnavailable as exc:
            log.warning("storage not reachable (%s); retrying in %.1fs", exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, backoff_max_s)
