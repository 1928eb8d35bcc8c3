"""Console sessions in the service database: the in-memory rules, on SQLite and PostgreSQL,
shared by every app over the same database, and never a usable cookie in the table."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.schemas import Principal, Role
from service.api.settings import ApiSettings
from service.console.stored_sessions import StoredSessions
from service.store import SqliteStore
from tests.console.conftest import login
from tests.service.factories import site
from tests.service.live import mint_tokens

WHO = Principal(role=Role.HOSPITAL, subject="s1")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    dsn: str = request.getfixturevalue("timescale_dsn")
    return dsn


def test_stored_sessions_expire_when_idle_and_after_their_lifetime(url: str) -> None:
    now = [1_000.0]
    sessions = StoredSessions(url, idle_s=10, lifetime_s=25, clock=lambda: now[0])
    try:
        session = sessions.start(WHO, "k")
        now[0] += 9
        found = sessions.get(session.id)
        assert found is not None and found.who == WHO and found.csrf == session.csrf
        now[0] += 9
        assert sessions.get(session.id) is not None  # seen at +9: idle only 9 s
        now[0] += 8
        assert sessions.get(session.id) is None  # past its lifetime (26 s)
        other = sessions.start(WHO, "k")
        now[0] += 11
        assert sessions.get(other.id) is None  # idle 11 s
        assert sessions.get("nonsense") is None and sessions.get(None) is None
        assert sessions.get("x" * 10_000) is None
        ended = sessions.start(WHO, "k")
        sessions.end(ended.id)
        assert sessions.get(ended.id) is None
    finally:
        sessions.close()


def test_stored_sessions_are_bounded_and_shared(url: str) -> None:
    sessions = StoredSessions(url, max_sessions=3)
    other_process = StoredSessions(url, max_sessions=3)
    try:
        first = sessions.start(WHO, "k")
        assert other_process.get(first.id) is not None  # any worker knows it
        for _ in range(3):
            sessions.start(WHO, "k")
        assert len(sessions) == 3
        assert other_process.get(first.id) is None
    finally:
        sessions.close()
        other_process.close()


def _stored_rows(url: str) -> list[tuple[str, ...]]:
    query = "SELECT digest, principal, token_key, csrf FROM console_sessions"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return [tuple(map(str, row)) for row in db.execute(query)]
    with psycopg.connect(url) as conn:
        return [tuple(map(str, row)) for row in conn.execute(query)]


def test_the_table_never_holds_a_usable_session_id(url: str) -> None:
    sessions = StoredSessions(url)
    try:
        session = sessions.start(WHO, "k")
        [row] = _stored_rows(url)
        assert session.id not in "".join(row)
        assert sessions.get(row[0]) is None  # the digest is not a cookie
    finally:
        sessions.close()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "tokens.json"
    yield path, mint_tokens(path, {"hosp": {"role": "hospital", "subject": "s1"}})["hosp"]


def test_a_login_outlives_the_api_process_that_took_it(
    tmp_path: Path, tokens_file: tuple[Path, str]
) -> None:
    db = tmp_path / "service.db"
    store = SqliteStore(db)
    store.put_site(site("s1"))
    store.close()
    settings = ApiSettings(store_url=f"sqlite:///{db}", tokens_file=tokens_file[0])
    with TestClient(create_app(settings)) as first:
        answer = login(first, tokens_file[1])
        assert answer.status_code == 303
        home, cookies = answer.headers["location"], dict(first.cookies)
    with TestClient(create_app(settings), cookies=cookies) as restarted:
        page = restarted.get(home, follow_redirects=False)
        assert page.status_code == 200, page.headers.get("location")
    with TestClient(create_app(settings), cookies={"vigil_session": "forged"}) as forged:
        assert forged.get(home, follow_redirects=False).status_code == 303
