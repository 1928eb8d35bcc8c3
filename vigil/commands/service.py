"""`vigil service …`: the alert → ticket worker and the REST API."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The service backbone: ticket worker and REST API.", no_args_is_help=True)

StoreUrl = Annotated[
    str,
    typer.Option("--store-url", envvar="VIGIL_SERVICE_STORE_URL",
                 help="sqlite:///path or postgresql://… (a libpq DSN works too)."),
]  # fmt: skip


@app.command("run")
def service_run(
    store_url: StoreUrl = "sqlite:///var/service.db",
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    client_id: Annotated[str, typer.Option(help="MQTT client id (persistent session).")] = (
        "vigil-service-1"
    ),
    mqtt_v5: Annotated[bool, typer.Option(help="MQTT 5 (off for 3.1.1 brokers).")] = True,
    tick_s: Annotated[float, typer.Option(help="Seconds between escalation/SLA/schedule runs.")] = (
        60.0
    ),
    notify: Annotated[
        Path | None, typer.Option(help="JSON file of webhook endpoints (NotifyConfig).")
    ] = None,
) -> None:
    """Turn alerts into dispatched tickets and notify people, until interrupted."""
    from service.store import open_service_store
    from service.worker import NotifyConfig, ServiceWorker, WorkerSettings

    config = NotifyConfig.model_validate_json(notify.read_text()) if notify else NotifyConfig()
    settings = WorkerSettings(host=host, port=port, client_id=client_id, mqtt_v5=mqtt_v5,
                              tick_s=tick_s, notify=config)  # fmt: skip
    store = open_service_store(store_url)
    try:
        asyncio.run(ServiceWorker(settings, store).run())
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


@app.command("api")
def service_api(
    store_url: StoreUrl = "sqlite:///var/service.db",
    tokens: Annotated[
        Path, typer.Option(help='JSON file: token → {"role": …, "subject": …}.')
    ] = Path("var/service-tokens.json"),
    readings_url: Annotated[
        str | None, typer.Option(envvar="VIGIL_READINGS_URL", help="ReadingStore URL.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the REST API with uvicorn."""
    import uvicorn

    # The factory reads the environment, so `vigil service api` and `uvicorn --factory` agree.
    os.environ["VIGIL_SERVICE_STORE_URL"] = store_url
    os.environ["VIGIL_SERVICE_TOKENS"] = json.dumps(json.loads(tokens.read_text()))
    if readings_url:
        os.environ["VIGIL_READINGS_URL"] = readings_url
    uvicorn.run("service.api:app_from_env", factory=True, host=host, port=port)
