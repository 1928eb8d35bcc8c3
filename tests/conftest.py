"""Session-wide real services, the `services` marker that follows them, Hypothesis profiles.

Tests that use a server fixture (directly or through other fixtures) are marked ``services``
automatically; ``make test-fast`` runs the rest (``pytest -m "not services"``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from tests.servers import STARTS_SERVER, PrivateMosquitto, PrivatePostgres, starts_server
from tests.webhook_receiver import receiver  # noqa: F401 - a fixture for every test

# The fixtures below start Mosquitto or PostgreSQL; others declare it with @starts_server.
SERVER_FIXTURES = frozenset({"mosquitto", "postgres_server", "timescale_dsn"})

# `too_slow` and the deadline measure the machine's load, not the code: on a shared 2-core box
# input generation alone can take seconds. CI runs a fixed set of examples (derandomize), so a
# red build is reproducible; developers get fresh random examples on every run.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    print_blob=True,
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _starts_a_server(item: pytest.Item) -> bool:
    """Whether ``item`` uses, directly or transitively, a fixture that starts a server."""
    names = set(getattr(item, "fixturenames", ()))  # the closure: fixtures of fixtures too
    if names & SERVER_FIXTURES:
        return True
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs if info is not None else {}
    return any(
        getattr(d.func, STARTS_SERVER, False) for name in names for d in definitions.get(name, ())
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a server ``services``, so ``-m "not services"`` skips it."""
    for item in items:
        if _starts_a_server(item):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
@starts_server
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
@starts_server
def mosquitto() -> Iterator[PrivateMosquitto]:
    """A private broker per test, so a test may kill and restart it."""
    broker = PrivateMosquitto()
    broker.start()
    yield broker
    broker.cleanup()
