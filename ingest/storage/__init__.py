"""Durable storage for readings, dead letters and alert events, behind one small protocol.

Backends: SQLite (``ingest.storage.sqlite``) and TimescaleDB (``ingest.storage.timescale``);
``open_store`` picks one from a URL. A store raises ``StorageUnavailable`` when its database is
out of reach for now; it reconnects by itself on a later call.
"""

from ingest.storage.base import (
    Bucket,
    DeadLetter,
    ReadingStore,
    StorageUnavailable,
    StoreOutcome,
)
from ingest.storage.url import open_store

__all__ = [
    "Bucket",
    "DeadLetter",
    "ReadingStore",
    "StorageUnavailable",
    "StoreOutcome",
    "open_store",
]
