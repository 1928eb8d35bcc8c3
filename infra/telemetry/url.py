"""Choosing and opening a telemetry store from a URL (parsed by ``infra.urls``)."""

from __future__ import annotations

from infra.telemetry.base import ReadingStore
from infra.urls import parse_store_url


def open_store(url: str) -> ReadingStore:
    """Open the store ``url`` names, without migrating it.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:`` open a
    SQLiteStore; ``postgresql://…`` or a libpq keyword DSN (``host=… dbname=…``) a
    TimescaleStore.
    """
    scheme, target = parse_store_url(url)
    # Imported here so that a SQLite-only deployment never needs psycopg's libpq.
    if scheme == "sqlite":
        from infra.telemetry.sqlite import SQLiteStore

        return SQLiteStore(target)
    from infra.telemetry.timescale import TimescaleStore

    return TimescaleStore(target)
