"""Durable storage for readings, dead letters and alert events, behind one small protocol.

Backends: SQLite (``infra.telemetry.sqlite``) and TimescaleDB (``infra.telemetry.timescale``);
``open_store`` picks one from a URL. A store raises ``StorageUnavailable`` when its database is
out of reach for now; it reconnects by itself on a later call.
"""

from infra.errors import StorageUnavailable
from infra.telemetry.base import (
    Bucket,
    DeadLetter,
    ReadingStore,
    StoreOutcome,
)
from infra.telemetry.url import open_store

__all__ = [
    "Bucket",
    "DeadLetter",
    "ReadingStore",
    "StorageUnavailable",
    "StoreOutcome",
    "open_store",
]
