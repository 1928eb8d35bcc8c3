"""One reading of storage URLs for every store (telemetry, service desk).

``sqlite:///relative.db``, ``sqlite:////absolute.db`` and ``sqlite:///:memory:`` name a SQLite
database; ``postgresql://…``, ``postgres://…`` or a libpq keyword DSN (``host=… dbname=…``) a
PostgreSQL one. Each store decides what to open; this module only says which kind and where.
"""

from __future__ import annotations

from typing import Literal

StoreScheme = Literal["sqlite", "postgresql"]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def parse_store_url(url: str) -> tuple[StoreScheme, str]:
    """(scheme, target): the SQLite path, or the PostgreSQL conninfo as given; else ValueError."""
    if url.startswith(_SQLITE_PREFIX):
        path = url.removeprefix(_SQLITE_PREFIX)
        if not path:
            raise ValueError(f"no database path in {url!r}: use sqlite:///path/to/file.db")
        return "sqlite", path
    if url.startswith(_POSTGRES_PREFIXES):
        return "postgresql", url
    if "=" in url and "://" not in url:
        return "postgresql", url  # a libpq keyword DSN: host=… dbname=…
    # Only the scheme is echoed: the rest of a URL may hold a password.
    scheme = url.split("://", 1)[0] if "://" in url else ""
    given = f"scheme {scheme!r}" if scheme else "no scheme"
    raise ValueError(
        f"unsupported store URL ({given}): use sqlite:///path, postgresql://… "
        "or a libpq DSN such as 'host=… dbname=…'"
    )
