"""Helpers for tests that run the service as real processes: a uvicorn API, a fresh PG database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from service.tokens import TokenRegistry
from testing_services.uvicorn_api import uvicorn_api_process
from tests.servers import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_database(server: PrivatePostgres) -> Iterator[str]:
    """A new empty database with TimescaleDB on ``server``; dropped afterwards."""
    name = f"svc_{uuid.uuid4().hex[:12]}"
    admin = server.dsn.replace("dbname=vigil", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    dsn = server.dsn.replace("dbname=vigil", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    try:
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


@dataclass(frozen=True)
class LiveApi:
    """A running API process: its base URL, its pid, and the tokens minted for it by name."""

    base: str
    pid: int
    tokens: Mapping[str, str] = field(default_factory=dict)


def client(api: LiveApi, name: str | None, timeout: float = 30) -> httpx.Client:
    """A client of ``api`` sending the token minted as ``name`` (any other string as is)."""
    token = api.tokens.get(name, name) if name else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=api.base, headers=headers, timeout=timeout)


def mint_tokens(path: Path, principals: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Mint one registry token per name (name → {"role", "subject"}); name → token."""
    registry = TokenRegistry(path)
    return {
        name: registry.mint(p["role"], p.get("subject"), note=name)[0]
        for name, p in principals.items()
    }


def api_env(store_url: str, tokens_file: Path, readings_url: str | None = None) -> dict[str, str]:
    """The settings of ``vigil.api_app:app``, as the [service] environment variables."""
    env = {
        "VIGIL_CONFIG": str(tokens_file.parent / "absent.toml"),  # no stray vigil.toml
        "VIGIL_SERVICE__STORE_URL": store_url,
        "VIGIL_SERVICE__TOKENS_FILE": str(tokens_file),
    }
    if readings_url is not None:
        env["VIGIL_SERVICE__READINGS_URL"] = readings_url
    return env


@contextmanager
def uvicorn_api(
    env: Mapping[str, str], tokens: Mapping[str, str] | None = None, *, workers: int = 1
) -> Iterator[LiveApi]:
    """``vigil.api_app:app`` in its own uvicorn process (``workers`` processes behind it),
    knowing ``tokens`` (name → token)."""
    with uvicorn_api_process(env, workers=workers, start_timeout_s=20 * workers) as api:
        yield LiveApi(api.base, api.pid, dict(tokens or {}))
