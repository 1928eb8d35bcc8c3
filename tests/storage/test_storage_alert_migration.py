"""Upgrading a database made before the alert outbox: the alerts table gains published_at."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg

from contract import AlertEvent, AlertTransition, Severity
from infra.telemetry import ReadingStore, timescale
from infra.telemetry.sqlite import SQLiteStore
from infra.telemetry.timescale import TimescaleStore
from tests.storage.factories import T0_US

OLD_SQLITE_ALERTS = """
    CREATE TABLE alerts (
        device_id TEXT NOT NULL, rule_id TEXT NOT NULL, severity INTEGER NOT NULL,
        transition TEXT NOT NULL, at_us INTEGER NOT NULL, message TEXT NOT NULL,
        evidence TEXT NOT NULL,
        PRIMARY KEY (device_id, rule_id, transition, at_us)
    ) WITHOUT ROWID
"""
OLD_TIMESCALE_ALERTS = """
    CREATE TABLE alerts (
        device_id text NOT NULL, rule_id text NOT NULL, severity smallint NOT NULL,
        transition text NOT NULL, at timestamptz NOT NULL, message text NOT NULL,
        evidence jsonb NOT NULL,
        PRIMARY KEY (device_id, rule_id, transition, at)
    )
"""


def _alert(at_us: int) -> AlertEvent:
    return AlertEvent(
        device_id="patch-1",
        rule_id="temp-high",
        severity=Severity.WARNING,
        transition=AlertTransition.RAISED,
        at_us=at_us,
        message="m",
    )


def _check_upgraded(store: ReadingStore, old: AlertEvent) -> None:
    # Rows from before the outbox count as published: an upgrade replays no alert history.
    assert store.fetch_alert_events() == [old]
    assert store.unpublished_alert_events() == []
    new = _alert(T0_US + 1)
    assert store.store_alert_events([new]) == 1
    store.migrate()  # the second run finds the column and backfills nothing
    assert store.unpublished_alert_events() == [new]
    store.mark_alerts_published([new])
    assert store.unpublished_alert_events() == []


def test_sqlite_alerts_table_gains_published_at(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = _alert(T0_US)
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_SQLITE_ALERTS)
        conn.execute(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                old.device_id,
                old.rule_id,
                int(old.severity),
                old.transition.value,
                old.at_us,
                old.message,
                "{}",
            ),
        )
    conn.close()
    with SQLiteStore(str(path)) as store:
        store.migrate()
        _check_upgraded(store, old)


def test_timescale_alerts_table_gains_published_at(timescale_dsn: str) -> None:
    old = _alert(T0_US)
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        conn.execute(OLD_TIMESCALE_ALERTS)
        conn.execute(
            "INSERT INTO alerts VALUES (%s, %s, %s, %s, to_timestamp(%s / 1e6), %s, '{}')",
            (
                old.device_id,
                old.rule_id,
                int(old.severity),
                old.transition.value,
                old.at_us,
                old.message,
            ),
        )
    with TimescaleStore(timescale_dsn) as store:
        store.migrate()
        _check_upgraded(store, old)


def test_timescale_site_alert_pages_read_each_devices_time_index(timescale_dsn: str) -> None:
    # A database made before the per-device index gains it; a page of a site's devices reads
    # it even in the generic plan a prepared statement comes to use, not the time index of
    # every device's alerts (which grows with the network).
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        conn.execute(OLD_TIMESCALE_ALERTS)
    with TimescaleStore(timescale_dsn) as store:
        store.migrate()
        store.store_alert_events([_alert(T0_US + n) for n in range(50)])
    names: list[str] = []

    def numbered(found: re.Match[str]) -> str:
        if found.group(1) not in names:
            names.append(found.group(1))
        return f"${names.index(found.group(1)) + 1}"

    statement = re.sub(r"%\((\w+)\)s", numbered, timescale._ALERT_PAGE_OF)
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("SET enable_seqscan = off")  # a test-sized table fits in one page
        conn.execute(f"PREPARE page AS {statement}")  # type: ignore[arg-type]
        args = ", ".join(
            "'{patch-1}'" if n == "ids" else "100" if n == "limit" else "NULL" for n in names
        )
        plan = conn.execute(f"EXPLAIN EXECUTE page({args})").fetchall()  # type: ignore[arg-type]
    text = "\n".join(row[0] for row in plan)
    assert "alerts_device_at" in text and "alerts_at " not in text, text
