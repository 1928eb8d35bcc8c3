"""Durable storage for readings, dead letters and alert events, behind one small protocol.

Backends: SQLite (``ingest.storage.sqlite``) and TimescaleDB (``ingest.storage.timescale``);
``open_store`` picks one from a URL.
"""

from ingest.storage.base import Bucket, DeadLetter, ReadingStore, StoreOutcome
from ingest.storage.url import open_store

__all__ = ["Bucket", "DeadLetter", "ReadingStore", "StoreOutcome", "open_store"]
