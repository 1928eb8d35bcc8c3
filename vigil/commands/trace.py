"""`vigil trace …`: which patients, devices, reading spans and tickets a lot touched."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Traceability: follow a production lot.", no_args_is_help=True)
console = Console()


class Format(StrEnum):
    """How the trace is written."""

    TABLE = "table"
    CSV = "csv"
    FHIR = "fhir"
    JSON = "json"


@app.command("lot")
def trace_lot_command(
    lot: Annotated[str, typer.Argument(help="The lot (GS1 AI 10, or the device's lot).")],
    fmt: Annotated[Format, typer.Option("--format", help="table, csv, fhir (Bundle), json.")] = (
        Format.TABLE
    ),
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    store_url: Annotated[
        str | None, typer.Option(help="Service store [default: service.store_url].")
    ] = None,
    readings_url: Annotated[
        str | None,
        typer.Option(help="Readings store [default: service.readings_url, else ingest's]."),
    ] = None,
    base_url: Annotated[str, typer.Option(help="FHIR base for the Bundle's fullUrls.")] = (
        "urn:vigil"
    ),
) -> None:
    """List every patient, device, reading span and ticket touched by ``lot``."""
    from infra.telemetry import open_store
    from service.api.context import Telemetry
    from service.store import open_service_store
    from service.traceability.trace import to_bundle, to_csv, trace_lot
    from vigil.settings import VigilSettings

    vigil = VigilSettings()
    store = open_service_store(store_url or vigil.service.store_url)
    readings = open_store(readings_url or vigil.service.readings_url or vigil.ingest.storage_url)
    try:
        found = trace_lot(
            store,
            Telemetry(readings),
            lot,
            visible=lambda _: True,
            until_us=time.time_ns() // 1000 + 1,
        )
    finally:
        readings.close()
        store.close()
    if fmt is Format.TABLE:
        _table(found)
        return
    if fmt is Format.CSV:
        text = to_csv(found)
    elif fmt is Format.FHIR:
        text = json.dumps(to_bundle(found, base_url), indent=1) + "\n"
    else:
        text = json.dumps(_plain(found), indent=1, default=str) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"{len(found.devices)} device(s) of lot {lot} written to {output}")


def _plain(found: object) -> object:
    import dataclasses

    from pydantic import BaseModel

    if isinstance(found, BaseModel):
        return found.model_dump(mode="json")
    if dataclasses.is_dataclass(found) and not isinstance(found, type):
        return {f.name: _plain(getattr(found, f.name)) for f in dataclasses.fields(found)}
    if isinstance(found, dict):
        return {k: _plain(v) for k, v in found.items()}
    if isinstance(found, tuple | list):
        return [_plain(v) for v in found]
    return found


def _table(found: object) -> None:
    from service.fhir.mapping import instant
    from service.traceability.trace import LotTrace

    assert isinstance(found, LotTrace)
    table = Table(title=f"lot {found.lot}: {len(found.devices)} device(s)")
    for column in ("site", "device", "patient", "readings from", "to", "n", "tickets"):
        table.add_column(column)
    for device in found.devices:
        span = found.spans.get(device.id)
        tickets = [t for t in found.tickets if t.device_id == device.id]
        table.add_row(
            device.site_id,
            device.id,
            device.patient or "-",
            instant(span.first_us) if span else "-",
            instant(span.last_us) if span else "-",
            str(span.count if span else 0),
            ", ".join(f"{t.id} ({t.state})" for t in tickets) or "-",
        )
    console.print(table)
