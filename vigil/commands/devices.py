"""`vigil devices …`: UDI registration, recalled lots, and the installed base ingest checks."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from contract import DeviceKind

if TYPE_CHECKING:
    from service.store import ServiceStore
    from service.traceability.lots import Registration

app = typer.Typer(
    help="Devices: UDI registration, recalled lots, the installed base.", no_args_is_help=True
)
console = Console()

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url", help="sqlite:///path or postgresql://… [default: service.store_url]."
    ),
]


def _store(store_url: str | None) -> ServiceStore:
    from service.store import open_service_store
    from vigil.settings import VigilSettings

    return open_service_store(store_url or VigilSettings().service.store_url)


def _print(done: Registration) -> None:
    udi = done.udi
    console.print(
        f"registered {done.device.id}: GTIN {udi.gtin}, lot {udi.lot or '-'}, "
        f"serial {udi.serial or '-'}, expiry {udi.expiry or '-'}",
        markup=False,
    )
    for alert in done.alerts:
        console.print(
            f"ALERT {alert.rule_id} ({alert.severity.name}): {alert.message}", markup=False
        )
    for ticket in done.tickets:
        console.print(f"ticket {ticket.id} opened ({ticket.tier})", markup=False)


@app.command("register")
def register(
    scan: Annotated[
        str,
        typer.Option(
            "--scan",
            help="The barcode as scanned or printed: (01)…(17)…(10)…(21)…, raw element strings "
            "(GS as <GS>), or a GS1 Digital Link.",
        ),
    ],
    device_id: Annotated[str, typer.Option("--id", help="The device's id in vigil.")],
    site: Annotated[str, typer.Option(help="Site the device is installed at.")],
    kind: Annotated[DeviceKind, typer.Option(help="Device kind.")] = DeviceKind.PATCH,
    model: Annotated[str, typer.Option(help="Model name.")] = "dressing patch",
    patient: Annotated[str | None, typer.Option(help="Pseudonymous patient of a home kit.")] = None,
    firmware: Annotated[str, typer.Option(help="Firmware version (Device Information).")] = "",
    ble_address: Annotated[
        str | None, typer.Option(help="BLE address as EUI-48, e.g. 00-1C-05-FF-E8-74.")
    ] = None,
    system_id: Annotated[str | None, typer.Option(help="IEEE 11073 system id (EUI-64).")] = None,
    manufacturer: Annotated[str, typer.Option(help="Manufacturer name.")] = "",
    installed_on: Annotated[
        str | None, typer.Option(help="Installation date, YYYY-MM-DD [default: today].")
    ] = None,
    store_url: StoreUrl = None,
) -> None:
    """Register a device from its UDI barcode; an expired or recalled lot raises an alert."""
    from pydantic import ValidationError

    from service.model import Device
    from service.traceability.gs1 import UdiError, parse_udi
    from service.traceability.lots import RegistrationRefused
    from service.traceability.lots import register as register_device
    from service.traceability.model import UdiRecord
    from vigil.settings import VigilSettings

    now = datetime.now(UTC)
    try:
        udi = parse_udi(scan)
        day = date.fromisoformat(installed_on) if installed_on else now.date()
        device = Device(
            id=device_id, kind=kind, model=model, serial=udi.serial or device_id, lot=udi.lot,
            firmware=firmware, installed_on=day, site_id=site, patient=patient,
        )  # fmt: skip
        record = UdiRecord(
            device_id=device_id, gtin=udi.gtin, expiry=udi.expiry, lot=udi.lot,
            serial=udi.serial, hri=udi.hri, ble_address=ble_address, system_id=system_id,
            manufacturer=manufacturer, registered_at=now,
        )  # fmt: skip
    except (UdiError, ValidationError, ValueError) as exc:
        console.print(f"error: {exc}", markup=False, style="red")
        raise typer.Exit(2) from None
    store = _store(store_url)
    try:
        sla = VigilSettings().sla_config(store)
        done = register_device(store, device, record, actor="cli:devices", at=now, sla=sla)
    except RegistrationRefused as exc:
        console.print(f"error: {exc}", markup=False, style="red")
        raise typer.Exit(1) from None
    finally:
        store.close()
    _print(done)


@app.command("recall")
def recall(
    lot: Annotated[str, typer.Argument(help="The recalled lot (GS1 AI 10).")],
    reason: Annotated[str, typer.Option(help="Why it is recalled.")] = "",
    gtin: Annotated[str, typer.Option(help="Only this GTIN's lot [default: any product].")] = "",
    store_url: StoreUrl = None,
) -> None:
    """Record a recalled lot and raise an alert for every device of it already in use."""
    from pydantic import ValidationError

    from service.traceability.lots import check_lots
    from service.traceability.model import Recall
    from vigil.settings import VigilSettings

    now = datetime.now(UTC)
    try:
        entry = Recall(lot=lot, gtin=gtin, reason=reason, recorded_at=now)
    except ValidationError as exc:
        console.print(f"error: {exc}", markup=False, style="red")
        raise typer.Exit(2) from None
    store = _store(store_url)
    try:
        store.put_recall(entry)
        store.append_audit(now, "cli:devices", "lot_recalled", lot, entry.model_dump(mode="json"))
        opened = check_lots(store, now, VigilSettings().sla_config(store))
    finally:
        store.close()
    console.print(f"lot {lot} recalled; {len(opened)} ticket(s) opened", markup=False)
    for ticket in opened:
        console.print(f"ticket {ticket.id}: device {ticket.device_id}", markup=False)


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

    named = _gateway_sites(gateway or [])
    kept: dict[str, str] = {}
    if out.exists():
        try:
            kept = dict(load_installed_base(out).gateways)
        except InstalledBaseError as exc:
            raise _fail(f"{exc} (fix or remove it; its gateways would be lost)") from None
    store = _store(store_url)
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
