"""The ``baselines`` table of the readings store: the rules' learnt wound baselines (SQLite and
PostgreSQL), one row per (device, rule), the latest write winning. ``at_us`` is the time of the
newest reading behind a row (``rules.baselines``); retention prunes by it.

A row is replaced only by one at least as new (``at_us``): an older writer (a standby that took
over from an older checkpoint) cannot move a baseline back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from contract import WoundBaseline

SQLITE_TABLE = """
    CREATE TABLE IF NOT EXISTS baselines (
        device_id TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        baseline REAL NOT NULL,
        current REAL,
        at_us INTEGER NOT NULL,
        PRIMARY KEY (device_id, rule_id)
    ) WITHOUT ROWID
"""
POSTGRES_TABLE = """
    CREATE TABLE IF NOT EXISTS baselines (
        device_id text NOT NULL,
        rule_id text NOT NULL,
        metric text NOT NULL,
        baseline double precision NOT NULL,
        current double precision,
        at_us bigint NOT NULL,
        PRIMARY KEY (device_id, rule_id)
    )
"""
# The retention prune finds rows by their stamp (rows of patches that stopped reporting).
AT_INDEX = "CREATE INDEX IF NOT EXISTS baselines_at_us ON baselines (at_us)"
_UPSERT_SET = """
    ON CONFLICT (device_id, rule_id) DO UPDATE SET
        metric = excluded.metric, baseline = excluded.baseline, current = excluded.current,
        at_us = excluded.at_us
    WHERE excluded.at_us >= baselines.at_us
"""
SQLITE_UPSERT = (
    "INSERT INTO baselines (device_id, rule_id, metric, baseline, current, at_us)"
    " VALUES (?, ?, ?, ?, ?, ?)" + _UPSERT_SET
)
POSTGRES_UPSERT = (
    """
    INSERT INTO baselines (device_id, rule_id, metric, baseline, current, at_us)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[],
                         %s::bigint[])
    """
    + _UPSERT_SET
)
_COLUMNS = "device_id, rule_id, metric, baseline, current, at_us"
SQLITE_SELECT = (
    f"SELECT {_COLUMNS} FROM baselines WHERE device_id IN ({{ids}}) ORDER BY device_id, rule_id"
)
POSTGRES_SELECT = (
    f"SELECT {_COLUMNS} FROM baselines WHERE device_id = ANY(%s) ORDER BY device_id, rule_id"
)


def rows(baselines: Iterable[WoundBaseline]) -> list[tuple[Any, ...]]:
    """``baselines`` as rows of the upsert, the last of each (device, rule) kept."""
    latest = {(b.device_id, b.rule_id): b for b in baselines}
    return [
        (b.device_id, b.rule_id, b.metric, b.baseline, b.current, b.at_us) for b in latest.values()
    ]


def columns(baselines: Iterable[WoundBaseline]) -> tuple[list[Any], ...]:
    """``baselines`` as the six arrays of the PostgreSQL upsert (one statement)."""
    found = rows(baselines)
    return tuple([row[i] for row in found] for i in range(6))


def baselines_of(found: Sequence[Sequence[Any]]) -> list[WoundBaseline]:
    """Stored rows back as ``WoundBaseline``s."""
    return [
        WoundBaseline(str(d), str(r), str(m), float(b), None if c is None else float(c), int(at))
        for d, r, m, b, c, at in found
    ]
