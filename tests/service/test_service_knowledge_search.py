"""Knowledge search is full text on both databases: any text is words or nothing, never query
syntax (a property test), and a database made before the index existed gains it, filled."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.knowledge import Fix, KnowledgeEntry
from service.store import PostgresStore, ServiceStore, SqliteStore
from service.store.knowledge_search import words
from service.store.queries import KnowledgeQuery

LENS = KnowledgeEntry(
    model="EX-100",
    code="image.dark",
    title="Dark image",
    causes=("Cracked lenses",),
    fixes=(Fix(text="Replace the distal lens", parts=("LENS-4",)),),
)


@pytest.fixture(params=["file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceStore]:
    db: ServiceStore
    if request.param == "postgres":
        db = PostgresStore(request.getfixturevalue("timescale_dsn"))
    else:
        db = SqliteStore(tmp_path / "service.db")
    db.put_knowledge(LENS)
    yield db
    db.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=100))
def test_any_search_text_is_words_or_nothing(store: ServiceStore, text: str) -> None:
    found = store.knowledge_page(KnowledgeQuery(text=text))
    assert found in ([], [LENS])
    if not words(text):
        assert found == []


def test_searches_an_engineer_types(store: ServiceStore) -> None:
    def hit(text: str) -> bool:
        return store.knowledge_page(KnowledgeQuery(text=text)) == [LENS]

    assert hit("crack lens") and hit("lenses cracked") and hit("dark imag")
    assert hit("LENS-4") and hit("image.dark") and hit("distal")
    assert not hit("cracked mirror") and not hit("lens-5")


def test_an_older_sqlite_database_gains_a_filled_index(tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    made = SqliteStore(path)
    made.put_knowledge(LENS)
    made.close()
    with sqlite3.connect(path) as db:  # as a release before full-text search left it
        db.execute("DROP TABLE service_knowledge_fts")
    reopened = SqliteStore(path)
    try:
        assert reopened.knowledge_page(KnowledgeQuery(text="cracked lens")) == [LENS]
    finally:
        reopened.close()


def test_an_older_postgres_database_gains_the_column(timescale_dsn: str) -> None:
    made = PostgresStore(timescale_dsn)
    made.put_knowledge(LENS)
    made.close()
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE service_knowledge DROP COLUMN search")
    reopened = PostgresStore(timescale_dsn)
    try:
        assert reopened.knowledge_page(KnowledgeQuery(text="cracked lens")) == [LENS]
    finally:
        reopened.close()
