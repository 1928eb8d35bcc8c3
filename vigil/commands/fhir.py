"""`vigil fhir …`: push readings to a hospital's FHIR server ([fhir] settings)."""

from __future__ import annotations

from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vigil.settings import FhirConfig, VigilSettings

if TYPE_CHECKING:
    import httpx

    from service.fhir.auth import Auth
    from service.fhir.uploader import Uploader

app = typer.Typer(help="FHIR R4: upload to a hospital's FHIR server.", no_args_is_help=True)
console = Console()


def _auth(config: FhirConfig, client: httpx.Client) -> Auth:
    from service.fhir.auth import ClientCredentials, NoAuth, StaticToken

    if config.auth == "bearer":
        return StaticToken(config.bearer_token.get_secret_value())
    if config.auth == "client_credentials":
        secret = config.client_secret.get_secret_value()
        return ClientCredentials(
            config.token_url, config.client_id, secret, config.scope, client=client
        )
    return NoAuth()


def _software() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "unknown"


def _uploader(vigil: VigilSettings, stack: ExitStack) -> Uploader:
    """The uploader as the settings describe it; its stores and client close with ``stack``."""
    import httpx

    from infra.telemetry import open_store
    from service.fhir.outbox import FhirOutbox
    from service.fhir.uploader import Uploader, UploadSettings
    from service.store import open_service_store

    f = vigil.fhir
    settings = UploadSettings(
        base_url=f.base_url.rstrip("/"),
        gateway_id=f.gateway_id or vigil.gateway.id,
        software=_software(),
        site_ids=frozenset(f.sites),
        bundle_size=f.bundle_size,
        lookback_s=f.lookback_s,
        backoff_s=f.backoff_s,
        backoff_cap_s=f.backoff_cap_s,
    )
    store = open_service_store(vigil.service.store_url)
    stack.callback(store.close)
    readings = open_store(f.readings_url or vigil.ingest.storage_url)
    stack.callback(readings.close)
    outbox = FhirOutbox(f.outbox_path)
    stack.callback(outbox.close)
    client = stack.enter_context(httpx.Client(timeout=f.timeout_s, follow_redirects=False))
    return Uploader(settings, readings, store, outbox, _auth(f, client), client)


@app.command("upload")
def upload(
    base_url: Annotated[
        str | None, typer.Option(help="FHIR base URL [default: fhir.base_url].")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Upload what is there now, then exit.")
    ] = False,
) -> None:
    """Upload readings as transaction Bundles through the outbox, until interrupted."""
    from vigil.stopping import run_until_stopped

    vigil = VigilSettings()
    vigil.fhir.base_url = base_url or vigil.fhir.base_url
    if not vigil.fhir.base_url:
        console.print("error: no FHIR server: set [fhir] base_url or pass --base-url", style="red")
        raise typer.Exit(2)
    with ExitStack() as stack:
        uploader = _uploader(vigil, stack)
        if not once:
            run_until_stopped(uploader.run(vigil.fhir.poll_s))
            return
        report = uploader.pass_once()
        counts = uploader.outbox.counts()
    console.print(
        f"{report.enqueued} new, {report.sent} sent, {report.failed} refused, "
        f"{report.retried} held; outbox: {counts['pending']} pending, {counts['done']} done, "
        f"{counts['failed']} failed",
        markup=False,
    )
    for error in report.errors[:3]:
        console.print(f"held: {error}", markup=False)
    if report.failed or counts["pending"]:
        raise typer.Exit(1)


@app.command("status")
def status(
    failures: Annotated[int, typer.Option(help="List this many refused Observations.")] = 10,
) -> None:
    """What the upload outbox holds, and why the server refused what it refused."""
    from service.fhir.outbox import FhirOutbox

    outbox = FhirOutbox(VigilSettings().fhir.outbox_path)
    try:
        counts, refused = outbox.counts(), outbox.failures(failures)
        cursor = outbox.cursor()
    finally:
        outbox.close()
    console.print(
        f"pending {counts['pending']}, done {counts['done']}, failed {counts['failed']}; "
        f"readings looked at up to {cursor if cursor is not None else '-'} µs",
        markup=False,
    )
    for key, reason in refused:
        console.print(f"{key}: {reason}", markup=False)
