"""Ingest's Prometheus metrics beyond its counters: write latency, and the consume loop's.

``IngestCounters`` (ingest.counters) already counts messages, batches, readings stored, dead
letters by kind and storage outages into the registry it is given. This adds what is measured
from outside the worker: how long each write to storage takes (a binary COPY on TimescaleDB),
through a store that times ``store_batches`` and passes everything else through.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Histogram

from contract import Batch
from infra.metrics import LATENCY_BUCKETS
from infra.telemetry.base import ReadingStore, StoreOutcome

if TYPE_CHECKING:
    from ingest.worker import IngestWorker


class TimedWrites:
    """A ``ReadingStore`` whose ``store_batches`` is timed into ``seconds``; all else delegated."""

    def __init__(self, store: ReadingStore, seconds: Histogram) -> None:
        self._store = store
        self._seconds = seconds

    def store_batches(self, batches: Sequence[Batch]) -> StoreOutcome:
        """Store the batches (one transaction), observing how long the write took."""
        began = time.perf_counter()
        outcome = self._store.store_batches(batches)
        # Only writes that committed: a failed one measures the outage, not the database.
        self._seconds.observe(time.perf_counter() - began)
        return outcome

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def write_seconds(registry: CollectorRegistry) -> Histogram:
    """The histogram of committed storage writes (one per group of batches)."""
    return Histogram(
        "vigil_ingest_write_seconds",
        "Time to write one group's batches to storage in one transaction (binary COPY on"
        " TimescaleDB), committed writes only",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


def timed_store(store: ReadingStore, registry: CollectorRegistry) -> ReadingStore:
    """``store`` with its batch writes timed into ``registry``."""
    return cast(ReadingStore, TimedWrites(store, write_seconds(registry)))


def instrument(worker: IngestWorker, registry: CollectorRegistry) -> None:
    """Count the worker's consume loop in ``registry`` (its counters are given it at birth)."""
    worker.loop.instrument(registry)
