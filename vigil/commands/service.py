"""`vigil service …`: the alert → ticket worker and the REST API ([service] settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vigil.settings import VigilSettings
from vigil.startup import startup_files

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
) -> None:
    """Turn alerts into dispatched tickets and notify people, until interrupted."""
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
    store = open_service_store(store_url or s.store_url)
    try:
        run_until_stopped(ServiceWorker(vigil.service_worker_settings(store), store).run())
    finally:
        store.close()


@app.command("api")
def service_api(
    store_url: StoreUrl = None,
    tokens: Annotated[
        Path | None,
        typer.Option(
            help='JSON file: token → {"role": …, "subject": …} [default: service.tokens_file].'
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
) -> None:
    """Serve the REST API with uvicorn."""
    import uvicorn

    from service.api import TokensUnavailable, create_app
    from vigil.api_app import api_settings

    vigil = VigilSettings()
    s = vigil.service
    # The app is built here from explicit settings and handed to uvicorn as an object:
    # nothing, least of all the tokens, goes through the environment.
    settings = api_settings(vigil).model_copy(
        update={
            "store_url": store_url or s.store_url,
            "tokens_file": tokens or s.tokens_file,
            "readings_url": readings_url or s.readings_url,
        }
    )
    try:
        api = create_app(settings)
    except TokensUnavailable as exc:
        typer.echo(
            f"vigil service api: {exc}\nName the file with --tokens FILE or [service] tokens_file"
            " (VIGIL_SERVICE__TOKENS_FILE).",
            err=True,
        )
        raise typer.Exit(1) from None
    except ValueError as exc:  # an unsupported store URL
        typer.echo(f"vigil service api: {exc}", err=True)
        raise typer.Exit(1) from None
    uvicorn.run(api, host=host or s.api_host, port=port or s.api_port)
