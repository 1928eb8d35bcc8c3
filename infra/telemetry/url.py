"""Choosing and opening a storage backend from a URL."""

from __future__ import annotations

from infra.telemetry.base import ReadingStore

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(url: str) -> ReadingStore:
    """Open the store ``url`` names, without migrating it.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:`` open a
    SQLiteStore; ``postgresql://…`` or a libpq keyword DSN (``host=… dbname=…``) a
    TimescaleStore.
    """
    # Imported here so that a SQLite-only deployment never needs psycopg's libpq.
    if url.startswith(_SQLITE_PREFIX):
        from infra.telemetry.sqlite import SQLiteStore

        path = url.removeprefix(_SQLITE_PREFIX)
        if not path:
            raise ValueError(f"no database path in {url!r}")
        return SQLiteStore(path)
    if url.startswith(_POSTGRES_SCHEMES) or ("=" in url and "://" not in url):
        from infra.telemetry.timescale import TimescaleStore

        return TimescaleStore(url)
    raise ValueError(f"unsupported storage URL {url!r}: use sqlite:///… or postgresql://…")
