"""Fixtures running the storage contract suite once per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.telemetry import ReadingStore, open_store

OpenStore = Callable[[], ReadingStore]


@pytest.fixture(params=["sqlite", "timescale"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vigil.db'}"
    # Resolved lazily so that `-k sqlite` runs never start PostgreSQL.
    return str(request.getfixturevalue("timescale_dsn"))


@pytest.fixture
def open_migrated(store_url: str) -> Iterator[OpenStore]:
    """Open further migrated stores on the same database, as separate workers would."""
    opened: list[ReadingStore] = []

    def _open() -> ReadingStore:
        store = open_store(store_url)
        opened.append(store)
        store.migrate()
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_migrated: OpenStore) -> ReadingStore:
    """A migrated, empty store."""
    return open_migrated()
