"""`vigil retention run`: prune once what the [retention] settings no longer keep.

The same prunes run periodically inside `vigil ingest run` (telemetry store) and `vigil service
run` (service store), every [retention] interval_s; this command is for a first prune, a cron
job on hosts that run neither, or a look at what would go (``--dry-run``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra.time_us import datetime_from_us, now_us
from vigil.settings import VigilSettings

if TYPE_CHECKING:
    from infra.retention import Pruned, RetentionPolicy

app = typer.Typer(
    help="Retention: prune what the retention settings no longer keep.", no_args_is_help=True
)
console = Console()


@app.callback()
def _group() -> None:
    """Retention: prune what the retention settings no longer keep."""


@app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    telemetry: Annotated[
        bool,
        typer.Option(
            help="Prune the telemetry store (readings, batch claims, dead letters, baselines)."
        ),
    ] = True,
    service: Annotated[
        bool, typer.Option(help="Prune the service store (notifications, dead letters).")
    ] = True,
    storage_url: Annotated[
        str | None, typer.Option(help="Telemetry store URL (default: ingest.storage_url).")
    ] = None,
    store_url: Annotated[
        str | None, typer.Option(help="Service store URL (default: service.store_url).")
    ] = None,
) -> None:
    """Prune both stores once and print what was removed (or would be), per kind."""
    settings = VigilSettings()
    policy = settings.retention_policy()
    now = now_us()
    table = Table("store", "kind", "would remove" if dry_run else "removed", "older than", "how")
    failed = False
    if telemetry:
        url = storage_url or settings.ingest.storage_url
        failed |= _prune_into(
            table, "telemetry", url, lambda: _telemetry(url, policy, now, dry_run)
        )
    if service:
        url = store_url or settings.service.store_url
        failed |= _prune_into(table, "service", url, lambda: _service(url, policy, now, dry_run))
    console.print(table)
    if dry_run:
        console.print("dry run: nothing was removed")
    if failed:
        raise typer.Exit(1)


def _prune_into(table: Table, store: str, url: str, prune: Callable[[], Sequence[Pruned]]) -> bool:
    """Run one store's prune and add its rows to ``table``; whether it failed."""
    from infra.errors import StorageUnavailable

    try:
        missing = _missing_sqlite_file(url)
        if missing is not None:
            console.print(f"{store} store: no SQLite file at {missing}; nothing to prune")
            return False
        pruned = prune()
    except (StorageUnavailable, ValueError) as exc:
        # The URL may carry a password: say which store, not where.
        console.print(f"{store} store: {exc}", style="red", markup=False)
        return True
    for p in pruned:
        cutoff = datetime_from_us(p.older_than_us).isoformat(timespec="seconds")
        table.add_row(store, p.kind, f"{p.rows:,}", cutoff.replace("+00:00", "Z"), p.how)
    return False


def _missing_sqlite_file(url: str) -> Path | None:
    """The path of a SQLite URL whose file does not exist (a prune must not create it)."""
    from infra.urls import parse_store_url

    scheme, target = parse_store_url(url)
    if scheme != "sqlite" or target == ":memory:" or Path(target).exists():
        return None
    return Path(target)


def _telemetry(url: str, policy: RetentionPolicy, now: int, dry_run: bool) -> list[Pruned]:
    """Prune the telemetry store at ``url`` (migrated first: older files lack the indexes)."""
    from infra.telemetry import open_store
    from infra.telemetry.retention import prune_telemetry

    with open_store(url) as store:
        store.migrate()
        return prune_telemetry(store, policy, now, dry_run=dry_run)


def _service(url: str, policy: RetentionPolicy, now: int, dry_run: bool) -> list[Pruned]:
    """Prune the service store at ``url`` (opening it migrates it)."""
    from service.retention import prune_service
    from service.store import open_service_store

    store = open_service_store(url)
    try:
        return prune_service(store, policy, datetime_from_us(now), dry_run=dry_run)
    finally:
        store.close()
