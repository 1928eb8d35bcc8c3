"""`vigil devices …`: the installed base, as ingest checks readings against it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vigil.settings import VigilSettings

app = typer.Typer(help="The installed base of devices and gateways.", no_args_is_help=True)
console = Console()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"vigil devices: {message}", err=True)
    return typer.Exit(2)


def _gateway_sites(pairs: list[str]) -> dict[str, str]:
    """``["gw-1=site-a"]`` → ``{"gw-1": "site-a"}``; exit 2 on a malformed pair."""
    gateways: dict[str, str] = {}
    for pair in pairs:
        gateway_id, sep, site = pair.partition("=")
        if not sep or not gateway_id.strip() or not site.strip():
            raise _fail(f"--gateway {pair!r}: expected GATEWAY_ID=SITE_ID")
        gateways[gateway_id.strip()] = site.strip()
    return gateways


@app.command("export-registry")
def export_registry(
    out: Annotated[
        Path, typer.Option(help="The registry file to write ([ingest] installed_base_file).")
    ],
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            help="GATEWAY_ID=SITE_ID: the site a gateway serves (repeat); gateways already "
            "in --out are kept unless named again."
        ),
    ] = None,
    store_url: Annotated[
        str | None, typer.Option(help="Service store [default: service.store_url].")
    ] = None,
) -> None:
    """Write the installed base (the service store's devices and sites, and the gateways)."""
    from infra.installed_base import (
        DeviceEntry,
        InstalledBase,
        InstalledBaseError,
        load_installed_base,
    )
    from service.store import open_service_store

    named = _gateway_sites(gateway or [])
    kept: dict[str, str] = {}
    if out.exists():
        try:
            kept = dict(load_installed_base(out).gateways)
        except InstalledBaseError as exc:
            raise _fail(f"{exc} (fix or remove it; its gateways would be lost)") from None
    store = open_service_store(store_url or VigilSettings().service.store_url)
    try:
        sites = {site.id for site in store.sites()}
        devices = {d.id: DeviceEntry(site=d.site_id, kind=d.kind) for d in store.devices()}
    finally:
        store.close()
    unknown = sorted({site for site in named.values() if site not in sites})
    if unknown:
        known = ", ".join(sorted(sites)) or "none"
        raise _fail(f"site(s) {', '.join(unknown)} not in the service store (known: {known})")
    base = InstalledBase(gateways={**kept, **named}, devices=devices)
    # Atomic: ingest re-reads the file when it changes and must never see half of it.
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(base.dump(), encoding="utf-8")
    os.replace(tmp, out)
    console.print(
        f"wrote {out}: {len(base.gateways)} gateways, {len(base.devices)} devices "
        f"at {len({d.site for d in devices.values()})} sites"
    )
    if not base.gateways:
        console.print(
            "[yellow]no gateway listed:[/yellow] ingest will dead-letter every reading; "
            "name each with --gateway ID=SITE"
        )
