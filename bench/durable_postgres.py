"""Private PostgreSQL clusters for the benchmarks, with the durability settings chosen.

The tests' cluster runs with fsync, synchronous_commit and full_page_writes off (fast tests);
``docs/deployment.md`` requires synchronous_commit on, and fsync and full_page_writes are on by
default in production. Headline figures use ``durable=True`` (all three on), the secondary ones
``durable=False`` (all three off, as the tests run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from testing_services import PrivatePostgres
from testing_services.servers import PG_BIN, wait_for_port

DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


class BenchPostgres(PrivatePostgres):
    """A private TimescaleDB cluster; ``durable`` turns fsync, synchronous_commit and
    full_page_writes on (the deployed settings), else all three are off."""

    def __init__(self, *, durable: bool) -> None:
        super().__init__()
        self.fully_durable = durable

    def start(self) -> None:
        """Start as the tests do, then restart with the durability settings asked for."""
        super().start()
        if not self.fully_durable:
            return
        self.stop()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockdir} "
            "-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off "
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on "
            "-c max_connections=100 -c shared_buffers=256MB"
        )
        pg_ctl = str(PG_BIN / "pg_ctl")
        log = str(self.dir / "postgres.log")
        self._as_postgres(pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        wait_for_port(self.port)

    def settings(self) -> dict[str, str]:
        """The durability settings the running server reports."""
        with psycopg.connect(self.dsn) as conn:
            shown = {}
            for name in DURABILITY:
                row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                shown[name] = "?" if row is None else str(row[0])
            return shown

    def server_file(self, name: str, chunks: Sequence[bytes]) -> Path:
        """Write ``chunks`` to a file the server process (user postgres) can read."""
        path = self.dir / name
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        path.chmod(0o644)
        return path
