"""The private services start and answer: everything else builds on them."""

from __future__ import annotations

import psycopg

from tests.servers import PrivateMosquitto, wait_for_port


def test_timescaledb_extension_is_loaded(timescale_dsn: str) -> None:
    with psycopg.connect(timescale_dsn) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    assert row is not None and row[0].startswith("2.")


def test_mosquitto_restarts_on_same_port(mosquitto: PrivateMosquitto) -> None:
    port = mosquitto.port
    mosquitto.kill()
    mosquitto.start()
    assert mosquitto.port == port
    wait_for_port(port)
