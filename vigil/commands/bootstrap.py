"""`vigil bootstrap`: a deployment's first run — migrations, the demo ward, the first admin token.

Safe to run on every start (docker compose runs it as a one-shot service): each step does
only what is missing, so a restarted stack keeps its data and its tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from service.store import ServiceStore
    from vigil.settings import VigilSettings

T = TypeVar("T")


def bootstrap(
    demo_ward: Annotated[
        int,
        typer.Option(
            min=0,
            help="Put the installed base of `gateway run --simulate-patches N` (its site, "
            "patches, patients and four engineers) into the service store, once; 0: none.",
        ),
    ] = 0,
    tokens: Annotated[
        Path | None,
        typer.Option(help="Token registry [default: service.tokens_file]."),
    ] = None,
    wait_s: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the databases to accept connections.")
    ] = 60.0,
) -> None:
    """Migrate both stores, seed the demo ward if asked, print a first admin token once."""
    from vigil.settings import VigilSettings

    settings = VigilSettings()
    _migrate_telemetry(settings.ingest.storage_url, wait_s)
    typer.echo(f"telemetry store migrated: {_redacted(settings.ingest.storage_url)}")
    store = _when_reachable(
        lambda: _open_service(settings),
        wait_s,
        f"service store {_redacted(settings.service.store_url)}",
    )
    try:
        typer.echo(f"service store migrated: {_redacted(settings.service.store_url)}")
        if demo_ward:
            _seed_demo_ward(store, settings, demo_ward)
    finally:
        store.close()
    _first_admin_token(tokens or settings.service.tokens_file)


def _open_service(settings: VigilSettings) -> ServiceStore:
    from service.store import open_service_store

    return open_service_store(settings.service.store_url, sla=settings.sla_config())


def _migrate_telemetry(url: str, wait_s: float) -> None:
    from infra.telemetry import open_store

    def migrate() -> None:
        with open_store(url) as store:
            store.migrate()

    _when_reachable(migrate, wait_s, f"telemetry store {_redacted(url)}")


def _when_reachable(attempt: Callable[[], T], wait_s: float, what: str) -> T:
    """``attempt()``, retried while the database is still starting, up to ``wait_s``."""
    import psycopg

    from infra.errors import StorageUnavailable

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return attempt()
        except (StorageUnavailable, psycopg.OperationalError) as exc:
            if time.monotonic() >= deadline:
                typer.echo(f"vigil bootstrap: {what} unreachable: {exc}".splitlines()[0], err=True)
                raise typer.Exit(1) from None
            time.sleep(1.0)


def _seed_demo_ward(store: ServiceStore, settings: VigilSettings, patches: int) -> None:
    """The simulated ward's site, devices, patients and engineers, unless its site exists."""
    from simulator.fleet import Fleet, FleetSpec
    from vigil.demo import seed_service

    spec = FleetSpec(
        seed=settings.simulator.seed, patches=patches, equipment=0, site=settings.gateway.site
    )
    if store.site(spec.site) is not None:
        typer.echo(f"demo ward: site {spec.site} exists already, kept")
        return
    seed_service(store, Fleet(spec))
    typer.echo(f"demo ward: site {spec.site} with {patches} patches and 4 engineers")


def _first_admin_token(path: Path) -> None:
    """Mint an admin token when the registry has no live one; it is printed this once."""
    from datetime import UTC, datetime

    from service.tokens import TokenRegistry

    registry = TokenRegistry(path)
    now = datetime.now(UTC)
    admins = [r for r in registry.records() if r.role == "admin" and r.live(now)]
    if admins:
        typer.echo(f"admin token {admins[0].id} exists already in {path}, kept")
        return
    token, record = registry.mint("admin", None, note="first admin (vigil bootstrap)")
    typer.echo(f"first admin token {record.id} (shown once, store it now):")
    typer.echo(token)


def _redacted(url: str) -> str:
    """``url`` without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}@{host}"
