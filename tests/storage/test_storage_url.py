"""open_store picks the backend from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.telemetry import open_store
from infra.telemetry.sqlite import SQLiteStore
from infra.telemetry.timescale import TimescaleStore


def test_sqlite_file_url(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        store.migrate()
    assert path.exists()


def test_sqlite_url_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "v.db"
    with open_store(f"sqlite:///{path}") as store:
        store.migrate()
    assert path.exists()


def test_sqlite_memory_url() -> None:
    with open_store("sqlite:///:memory:") as store:
        store.migrate()
        assert store.reading_count() == 0


def test_postgres_url_and_keyword_dsn(timescale_dsn: str) -> None:
    with open_store(timescale_dsn) as store:
        assert isinstance(store, TimescaleStore)
    params = dict(part.split("=", 1) for part in timescale_dsn.split())
    url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
    with open_store(url) as store:
        assert isinstance(store, TimescaleStore)


@pytest.mark.parametrize("url", ["", "mysql://x/y", "sqlite:///", "/tmp/file.db"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)
