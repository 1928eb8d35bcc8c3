"""The retention policy from settings, the SQLite prune's indexes and chunks, the periodic job."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.errors import StorageUnavailable
from infra.retention import Pruned, RetentionPolicy, delete_in_chunks, run_periodically
from infra.telemetry.sqlite import PRUNES, SQLiteStore
from tests.storage.factories import T0_US, batch, reading
from vigil.settings import VigilSettings


@pytest.fixture(autouse=True)
def no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))


def test_the_defaults() -> None:
    assert VigilSettings().retention_policy() == RetentionPolicy(
        readings_days=400,
        dead_letters_days=90,
        batch_claims_days=400,
        notifications_days=90,
        baselines_days=30,
        interval_s=3600.0,
    )


def test_the_rules_do_not_write_back_baselines_retention_would_prune(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert VigilSettings().runtime_settings().baselines_keep_s == 30 * 86_400.0
    monkeypatch.setenv("VIGIL_RETENTION__BASELINES_DAYS", "7")
    assert VigilSettings().runtime_settings().baselines_keep_s == 7 * 86_400.0


def test_batch_claims_follow_the_readings_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_RETENTION__READINGS_DAYS", "800")
    assert VigilSettings().retention_policy().batch_claims_days == 800
    monkeypatch.setenv("VIGIL_RETENTION__BATCH_CLAIMS_DAYS", "900")
    assert VigilSettings().retention_policy().batch_claims_days == 900


def test_batch_claims_shorter_than_readings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_RETENTION__BATCH_CLAIMS_DAYS", "30")
    with pytest.raises(ValidationError, match=r"batch_claims_days \(30\) must be at least"):
        VigilSettings()
    with pytest.raises(ValueError, match="must be at least readings_days"):
        RetentionPolicy(readings_days=400, batch_claims_days=30)


@pytest.mark.parametrize(
    "key", ["READINGS_DAYS", "DEAD_LETTERS_DAYS", "NOTIFICATIONS_DAYS", "BASELINES_DAYS"]
)
def test_a_retention_under_a_day_is_refused(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv(f"VIGIL_RETENTION__{key}", "0")
    with pytest.raises(ValidationError, match=key.lower()):
        VigilSettings()


def test_delete_in_chunks_stops_at_the_first_short_chunk() -> None:
    left, calls = [25], []

    def chunk(limit: int) -> int:
        calls.append(limit)
        done = min(limit, left[0])
        left[0] -= done
        return done

    assert delete_in_chunks(chunk, 10) == 25 and calls == [10, 10, 10]
    left[0] = 20
    assert delete_in_chunks(chunk, 10) == 20 and len(calls) == 6  # 10, 10, then an empty one


@pytest.mark.parametrize("kind", sorted(PRUNES))
def test_every_sqlite_prune_finds_its_rows_through_an_index(tmp_path: Path, kind: str) -> None:
    store = SQLiteStore(str(tmp_path / "v.db"))
    store.migrate()
    store.close()
    db = sqlite3.connect(tmp_path / "v.db")
    for query, params in zip(PRUNES[kind], [(0,), (0, 1)], strict=True):
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", params))
        assert "INDEX" in plan, plan
        assert "SCAN" not in plan, plan  # no full table scan
    db.close()


def test_sqlite_prunes_readings_in_bounded_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(str(tmp_path / "v.db"))
    store.migrate()
    store.store_batches([batch(0, [reading(i) for i in range(30)])])
    store.prune_chunk_rows = 7
    real = store._db.transaction
    transactions = []

    @contextmanager
    def counted() -> Iterator[sqlite3.Connection]:
        transactions.append(1)
        with real() as conn:
            yield conn

    monkeypatch.setattr(store._db, "transaction", counted)
    assert store.prune_readings(T0_US + 30 * 60_000_000).rows == 30
    assert len(transactions) == 5  # 7 + 7 + 7 + 7 + 2
    assert store.reading_count() == 0
    store.close()


async def test_the_periodic_job_outlives_outages_and_failures() -> None:
    outcomes: list[BaseException | None] = [StorageUnavailable("down"), RuntimeError("bug")]
    runs: list[int] = []

    def job() -> list[Pruned]:
        runs.append(1)
        if outcomes:
            failure = outcomes.pop(0)
            if failure is not None:
                raise failure
        return [Pruned("readings", 1, 0)]

    task = asyncio.create_task(run_periodically(job, 0.01, "test"))
    try:
        for _ in range(1000):
            if len(runs) >= 4:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert len(runs) >= 4
    assert not outcomes  # both failures happened, and the job ran on after them
