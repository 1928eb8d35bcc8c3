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
def uvicorn_api(env: Mapping[str, str]) -> Iterator[str]:
    """``vigil.api_app:app`` in its own uvicorn process; yields the base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "vigil.api_app:app",
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


def write_tokens(path: Path, tokens: Mapping[str, Any]) -> Path:
    """A tokens file at ``path`` for ``tokens`` (token → {"role", "subject"})."""
    path.write_text(json.dumps(tokens), encoding="utf-8")
    return path


def answers(url: str) -> bool:
    """True when ``url`` answers 200; False while nothing listens yet."""
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False
