"""A real ingest worker on a SQLite file, for gateway tests that need confirmations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from infra.telemetry.sqlite import SQLiteStore
from ingest.worker import IngestSettings, IngestWorker


@contextlib.asynccontextmanager
async def sqlite_ingest(
    port: int, db: Path, client_id: str = "gw-test-ingest", confirm: bool = True
) -> AsyncIterator[IngestWorker]:
    """Run an IngestWorker (persistent session) storing into ``db`` until the block exits."""
    store = SQLiteStore(str(db))
    store.migrate()
    worker = IngestWorker(
        IngestSettings(port=port, client_id=client_id, confirm=confirm, reconnect_backoff_s=0.1),
        store,
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 15)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()
