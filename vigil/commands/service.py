"""`vigil service …`: the alert → ticket worker and the REST API ([service] settings)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from infra.logs import show_start_lines
from vigil.commands.observe import chosen_port, metrics_endpoint, metrics_port_option
from vigil.settings import VigilSettings
from vigil.startup import startup_files

if TYPE_CHECKING:
    from infra.retention import Pruned
    from service.checkpoint_export import CheckpointExporter
    from service.store import ServiceStore

app = typer.Typer(help="The service backbone: ticket worker and REST API.", no_args_is_help=True)

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="sqlite:///path or postgresql://… (a libpq DSN works too) "
        "[default: service.store_url].",
    ),
]


@app.command("run")
def service_run(
    store_url: StoreUrl = None,
    host: Annotated[
        str | None, typer.Option(help="MQTT broker host [default: uplink_broker.host].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="MQTT broker port [default: uplink_broker.port].")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id [default: service.client_id].")
    ] = None,
    mqtt_v5: Annotated[
        bool | None, typer.Option(help="MQTT 5, off for 3.1.1 brokers [default: service.mqtt_v5].")
    ] = None,
    tick_s: Annotated[
        float | None,
        typer.Option(
            help="Seconds between escalation/SLA/schedule runs [default: service.tick_interval_s]."
        ),
    ] = None,
    notify: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of webhook endpoints (NotifyConfig) [default: service.notify_file]."
        ),
    ] = None,
    metrics_port: Annotated[int | None, metrics_port_option("service_port")] = None,
) -> None:
    """Turn alerts into dispatched tickets and notify people, until interrupted."""
    show_start_lines()  # a long-running process: say what it connects to, at any level
    from prometheus_client import CollectorRegistry

    from infra.logs import mask_url, started
    from infra.retention import pruning
    from service import metrics
    from service.notifications import wall_clock
    from service.retention import prune_service
    from service.store import open_service_store
    from service.worker import ServiceWorker
    from vigil.stopping import run_until_stopped

    vigil = VigilSettings()
    s, broker = vigil.service, vigil.uplink_broker
    broker.host = host or broker.host
    broker.port = port or broker.port
    s.client_id = client_id or s.client_id
    s.mqtt_v5 = s.mqtt_v5 if mqtt_v5 is None else mqtt_v5
    s.tick_interval_s = tick_s or s.tick_interval_s
    s.notify_file = notify or s.notify_file
    with startup_files("service run"):
        vigil.check_tls("uplink_broker")
    store = open_service_store(store_url or s.store_url, sla=vigil.sla_config())
    started("service", "store", url=mask_url(store_url or s.store_url))
    worker_settings = vigil.service_worker_settings(store)
    checkpoints = _audit_signing(store, s.audit_key_file, s.audit_checkpoint_file)
    if checkpoints is not None:
        checkpoints.notify = worker_settings.notify
    worker = ServiceWorker(worker_settings, store, checkpoints=checkpoints)
    exported = CollectorRegistry()
    metrics.register(exported, worker, store)
    policy = vigil.retention_policy()

    def prune() -> list[Pruned]:
        return prune_service(store, policy, wall_clock())

    async def main() -> None:
        # Beside the worker's ticker rather than on it: it runs every interval_s, not every
        # tick_s, and needs nothing of the desk; the store is shared (it is thread-safe).
        async with pruning(prune, policy.interval_s, "service"):
            if not s.remote:
                await worker.run()
                return
            from service.commands_relay import CommandRelay
            from service.presence_consumer import PresenceConsumer

            # Presence, health and commands: beside the worker, on the same store.
            async with asyncio.TaskGroup() as group:
                group.create_task(worker.run())
                group.create_task(PresenceConsumer(worker_settings, store).run())
                group.create_task(CommandRelay(worker_settings, store).run())

    port = chosen_port(metrics_port, vigil.metrics.service_port)
    try:
        with metrics_endpoint("service", exported, port, vigil.metrics.host):
            run_until_stopped(main())
    finally:
        store.close()


def _audit_signing(
    store: ServiceStore, key_file: Path | None, checkpoint_file: Path | None
) -> CheckpointExporter | None:
    """Sign the store's audit rows and export checkpoints when a signing key is configured."""
    if key_file is None:
        return None
    from service.checkpoint import CheckpointError, load_key, row_signature
    from service.checkpoint_export import CheckpointExporter

    try:
        key = load_key(key_file)
    except CheckpointError as exc:
        typer.echo(f"error: {exc} (create one with `vigil audit keygen`)", err=True)
        raise typer.Exit(2) from None
    store.audit_signer = lambda entry: row_signature(key, entry)
    return CheckpointExporter(key, checkpoint_file)


@app.command("api")
def service_api(
    store_url: StoreUrl = None,
    tokens: Annotated[
        Path | None,
        typer.Option(
            help="Token registry (`vigil tokens add`) [default: service.tokens_file].",
        ),
    ] = None,
    readings_url: Annotated[
        str | None, typer.Option(help="ReadingStore URL [default: service.readings_url].")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: service.api_host].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [default: service.api_port].")
    ] = None,
    metrics_port: Annotated[int | None, metrics_port_option("api_port")] = None,
) -> None:
    """Serve the REST API with uvicorn."""
    show_start_lines()  # a long-running process: say what it connects to, at any level
    import uvicorn
    from prometheus_client import CollectorRegistry

    from infra.logs import mask_url, started
    from service.api import TokensUnavailable, create_app
    from service.api.metrics import RequestMetrics, register_rate_metrics
    from vigil.api_app import api_settings

    vigil = VigilSettings()
    s = vigil.service
    # The app is built here from explicit settings and handed to uvicorn as an object:
    # nothing, least of all the tokens, goes through the environment.
    try:
        settings = api_settings(vigil).model_copy(
            update={
                "store_url": store_url or s.store_url,
                "tokens_file": tokens or s.tokens_file,
                "readings_url": readings_url or s.readings_url,
            }
        )
        api = create_app(settings, sla=vigil.sla_config())  # the worker's SLA policy
    except TokensUnavailable as exc:
        typer.echo(
            f"vigil service api: {exc}\nName another file with --tokens FILE or [service]"
            " tokens_file (VIGIL_SERVICE__TOKENS_FILE).",
            err=True,
        )
        raise typer.Exit(1) from None
    except ValueError as exc:  # an unsupported store URL, an unreadable limit
        typer.echo(f"vigil service api: {exc}", err=True)
        raise typer.Exit(1) from None
    # Outermost: requests refused by the host check or the body limit are counted too.
    exported = CollectorRegistry()
    api.add_middleware(RequestMetrics, registry=exported)
    register_rate_metrics(exported, api.state.context.limits)
    listen = (host or s.api_host, port or s.api_port)
    readings = settings.readings_url
    started(
        "api",
        "serving",
        listen=f"{listen[0]}:{listen[1]}",
        store=mask_url(settings.store_url),
        readings="none" if readings is None else mask_url(readings),
        tokens=settings.tokens_file,
    )
    metrics = chosen_port(metrics_port, vigil.metrics.api_port)
    with metrics_endpoint("api", exported, metrics, vigil.metrics.host):
        # log_config=None: uvicorn's loggers go through ours (--log-format json included).
        uvicorn.run(api, host=listen[0], port=listen[1], log_config=None)
