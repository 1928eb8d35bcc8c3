"""Session-wide real services: a private Mosquitto and a private PostgreSQL+TimescaleDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.servers import PrivateMosquitto, PrivatePostgres
from tests.webhook_receiver import receiver  # noqa: F401 - a fixture for every test


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PrivatePostgres]:
    """One PostgreSQL+TimescaleDB cluster for the whole session."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def timescale_dsn(postgres_server: PrivatePostgres) -> Iterator[str]:
    """A fresh, empty database with TimescaleDB for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.dsn.replace("dbname=vigil", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = postgres_server.dsn.replace("dbname=vigil", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    yield dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def mosquitto() -> Iterator[PrivateMosquitto]:
    """A private broker per test, so a test may kill and restart it."""
    broker = PrivateMosquitto()
    broker.start()
    yield broker
    broker.cleanup()
