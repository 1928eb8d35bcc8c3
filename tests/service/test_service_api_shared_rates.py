"""API rate budgets shared by every API process through the service database.

The storage on both backends (SQLite, PostgreSQL) under the ``limits`` sliding-window-counter
strategy; two storages on one database as two processes; concurrent hits that never grant more
than the budget; a database outage, during which each process counts alone; and two real API
processes on one PostgreSQL database spending one token's budget between them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import HTTPException
from limits import parse
from limits.errors import StorageError
from limits.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import CollectorRegistry

from service.api.metrics import register_rate_metrics
from service.api.rate import RateLimits
from service.api.rate_storage import PRUNE_EVERY_S, DatabaseRateStorage
from tests.servers import PrivatePostgres
from tests.service.live import api_env, client, fresh_database, mint_tokens, uvicorn_api

T0 = 1_800_000_000.0  # a window boundary for 60 s windows (30,000,000 × 60)


class Clock:
    """A settable wall clock shared by the storages of one test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    server: PrivatePostgres = request.getfixturevalue("postgres_server")
    with fresh_database(server) as dsn:
        yield dsn  # a libpq keyword DSN, as the service store takes it


def _storages(url: str, clock: Clock, n: int = 2) -> list[DatabaseRateStorage]:
    return [DatabaseRateStorage(url, clock=clock) for _ in range(n)]


def test_a_budget_is_spent_then_refused_then_refilled_as_the_window_slides(
    database_url: str,
) -> None:
    clock = Clock()
    (storage,) = _storages(database_url, clock, 1)
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("4/minute")
    try:
        assert [limiter.hit(item, "request", "t1") for _ in range(5)] == [True] * 4 + [False]
        assert limiter.hit(item, "request", "t2")  # another key, its own budget
        assert not limiter.test(item, "request", "t1")
        # Half a window later the previous window still weighs half: 4 × 0.5 = 2 spent.
        clock.now = T0 + 90
        assert [limiter.hit(item, "request", "t1") for _ in range(3)] == [True, True, False]
        # Two windows on, nothing of the first is left.
        clock.now = T0 + 240
        assert [limiter.hit(item, "request", "t1") for _ in range(5)] == [True] * 4 + [False]
    finally:
        storage.close()


def test_two_processes_spend_one_budget(database_url: str) -> None:
    clock = Clock()
    first, second = _storages(database_url, clock)
    a, b = SlidingWindowCounterRateLimiter(first), SlidingWindowCounterRateLimiter(second)
    item = parse("5/minute")
    try:
        assert all(a.hit(item, "request", "t1") for _ in range(3))
        assert all(b.hit(item, "request", "t1") for _ in range(2))
        assert not a.hit(item, "request", "t1") and not b.hit(item, "request", "t1")
        key = item.key_for("request", "t1")
        assert first.get_sliding_window(key, 60) == second.get_sliding_window(key, 60)
        first.clear_sliding_window(key, 60)
        assert b.hit(item, "request", "t1")  # cleared for both
    finally:
        first.close()
        second.close()


def test_concurrent_hits_never_grant_more_than_the_budget(database_url: str) -> None:
    clock = Clock()
    storages = _storages(database_url, clock)
    limiters = [SlidingWindowCounterRateLimiter(s) for s in storages]
    item = parse("50/minute")

    def hit(n: int) -> bool:
        return limiters[n % 2].hit(item, "request", "flood")

    try:
        with ThreadPoolExecutor(8) as pool:
            granted = sum(pool.map(hit, range(200)))
        # Exactly the budget: the last of it cannot go twice, nor is any of it lost to a race.
        assert granted == 50
        assert not any(hit(n) for n in range(4))
        assert storages[0].get(f"{item.key_for('request', 'flood')}/{int(T0 / 60)}") == 50
    finally:
        for storage in storages:
            storage.close()


def test_counters_restart_after_their_window_and_ended_ones_are_pruned(
    database_url: str,
) -> None:
    clock = Clock()
    (storage,) = _storages(database_url, clock, 1)
    try:
        assert storage.incr("k", 10) == 1 and storage.incr("k", 10, amount=2) == 3
        assert storage.get_expiry("k") == T0 + 10
        clock.now = T0 + 10
        assert storage.get("k") == 0 and storage.get_expiry("k") == T0 + 10
        assert storage.incr("k", 10) == 1  # restarts, in the same statement
        assert storage.get_expiry("k") == T0 + 20
        storage.incr("old", 5)
        clock.now = T0 + 10 + PRUNE_EVERY_S
        storage.incr("new", 5)  # a minute on: ended rows are deleted
        assert storage.get("new") == 1 and storage.get("k") == 0
        assert storage.check()
        storage.clear("new")
        assert storage.get("new") == 0
    finally:
        storage.close()


def test_an_unreachable_database_is_a_storage_error(tmp_path: Path) -> None:
    storage = DatabaseRateStorage(f"sqlite:///{tmp_path / 'service.db'}")
    storage.close()
    with pytest.raises(StorageError):
        storage.incr("k", 10)
    assert not storage.check()


def _spend(limits: RateLimits, key: str) -> bool:
    try:
        limits.request(key)
    except HTTPException as refused:
        assert refused.status_code == 429 and refused.headers is not None
        assert int(refused.headers["Retry-After"]) >= 1
        return False
    return True


def test_while_the_database_is_down_each_process_counts_alone(
    postgres_server: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    with fresh_database(postgres_server) as dsn:
        storage = DatabaseRateStorage(dsn, clock=Clock())  # no window boundary mid-test
        limits = RateLimits("3/minute", shared=storage)
        try:
            assert [_spend(limits, "t1") for _ in range(4)] == [True] * 3 + [False]
            assert limits.fallbacks == 0
            admin = postgres_server.dsn.replace("dbname=vigil", "dbname=postgres")
            name = dict(item.split("=", 1) for item in dsn.split())["dbname"]
            with psycopg.connect(admin, autocommit=True) as conn:  # the database goes away
                conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]
            with caplog.at_level(logging.WARNING, logger="service.api.rate"):
                spent = [_spend(limits, "t1") for _ in range(4)]
            # Not refused for an error, not let through unlimited: this process's own window.
            assert spent == [True] * 3 + [False]
            assert limits.fallbacks >= 4
            registry = CollectorRegistry()
            register_rate_metrics(registry, limits)
            assert registry.get_sample_value("vigil_api_rate_budgets_shared") == 1
            fell_back = registry.get_sample_value("vigil_api_rate_fallbacks_total")
            assert fell_back == limits.fallbacks
            warnings = [r for r in caplog.records if "shared API rate budgets" in r.getMessage()]
            assert len(warnings) == 1  # once a minute, not once a request
        finally:
            storage.close()


def _not_near_the_end_of_an_hour(margin_s: float = 60.0) -> None:
    """Past the next hour boundary if it is near: the sliding window counter weighs the window
    before by the part of it still in the last hour, so a count can blur by one across it."""
    left = 3600 - time.time() % 3600
    if left < margin_s:
        time.sleep(left + 0.5)


def test_two_api_processes_spend_one_set_of_budgets(
    postgres_server: PrivatePostgres, tmp_path: Path
) -> None:
    with fresh_database(postgres_server) as dsn:
        tokens = mint_tokens(tmp_path / "tokens.json", {"adm": {"role": "admin"}})
        env = {
            **api_env(dsn, tmp_path / "tokens.json"),
            "VIGIL_SERVICE__API_RATE_LIMIT": "6/hour",
            "VIGIL_SERVICE__API_AUTH_FAILURE_LIMIT": "4/hour",
        }
        with uvicorn_api(env, tokens) as first, uvicorn_api(env, tokens) as second:
            apis = (first, second)
            _not_near_the_end_of_an_hour()

            def get(n: int, token: str) -> httpx.Response:
                with client(apis[n % 2], token) as http:
                    return http.get("/devices")

            # Six requests of one token, alternating between the processes: one budget of six.
            assert [get(n, "adm").status_code for n in range(6)] == [200] * 6
            for n in (0, 1):
                refused = get(n, "adm")
                assert refused.status_code == 429, refused.text
                assert "too many requests" in refused.json()["detail"]
            # Failed authentications from this address, counted together too. (Last: an
            # address over it is stopped before its token is looked at.)
            wrong = "vgl_" + "x" * 40
            assert [get(n, wrong).status_code for n in range(4)] == [401] * 4
            assert [get(n, wrong).status_code for n in (0, 1)] == [429, 429]
