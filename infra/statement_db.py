"""One SQL statement at a time on the service database, SQLite or PostgreSQL, from any thread.

For the small tables that several API processes must share (console sessions, rate budgets):
each call is one autocommit statement, on a pooled PostgreSQL connection or on one SQLite
connection behind a lock. Statements are written with psycopg's placeholders, ``%s`` with a
sequence or ``%(name)s`` with a mapping; on SQLite they become ``?`` and ``:name``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from infra.pg_pool import PgPool
from infra.sqlite_db import connect
from infra.urls import parse_store_url

_NAMED = re.compile(r"%\((\w+)\)s")
Params = Sequence[object] | Mapping[str, object]


class StatementDatabase:
    """One statement at a time on SQLite (a lock) or on a pooled PostgreSQL connection."""

    def __init__(self, url: str, *, name: str, max_size: int = 4, check: bool = True) -> None:
        """``check``: as ``PgPool``'s (each pooled connection tested before it is lent)."""
        scheme, target = parse_store_url(url)
        self.postgres = scheme == "postgresql"
        self._pool = (
            PgPool(target, name=name, max_size=max_size, check=check) if self.postgres else None
        )
        self._sqlite = None if self.postgres else connect(target)
        self._lock = threading.Lock()

    def execute(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit); its rows, if it returns any."""
        if self._pool is not None:
            with self._pool.connection() as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        assert self._sqlite is not None
        with self._lock:
            sql = _NAMED.sub(r":\1", sql) if isinstance(params, Mapping) else sql.replace("%s", "?")
            rows = self._sqlite.execute(sql, params).fetchall()
        return rows

    def close(self) -> None:
        """Close the pool or the connection."""
        if self._pool is not None:
            self._pool.close()
        if self._sqlite is not None:
            self._sqlite.close()
