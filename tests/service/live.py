"""Helpers for tests that run the service as real processes: a uvicorn API, a fresh PG database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.servers import PrivatePostgres, free_port
from tests.waiting import wait_until

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


@contextmanager
def uvicorn_api(env: Mapping[str, str]) -> Iterator[str]:
    """``service.api:app_from_env`` in its own uvicorn process; yields the base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.api:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/health"), 20, "uvicorn to answer /health")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def answers(url: str) -> bool:
    """True when ``url`` answers 200; False while nothing listens yet."""
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def tokens_env(tokens: Mapping[str, Any]) -> str:
    """VIGIL_SERVICE_TOKENS for ``tokens``."""
    return json.dumps(tokens)
