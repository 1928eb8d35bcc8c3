"""What every request of one app shares: stores, how callers are known, limits, SLA and clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from contract import AlertEvent, Reading
from infra.telemetry.base import Bucket, ReadingStore
from service.api.auth import Authenticate
from service.api.rate import RateLimits
from service.sla import SlaConfig
from service.store import ServiceStore


class Telemetry:
    """The optional reading store, one caller at a time (it holds one connection, while FastAPI
    runs sync routes in a thread pool)."""

    def __init__(self, store: ReadingStore | None) -> None:
        self._store = store
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether a reading store is configured."""
        return self._store is not None

    def alerts(self, device_id: str | None) -> list[AlertEvent]:
        """Alert events of one device or of all; none without a reading store."""
        if self._store is None:
            return []
        with self._lock:
            return self._store.fetch_alert_events(device_id)

    def readings(
        self, device_id: str, metric: str | None, since_us: int, until_us: int, limit: int
    ) -> list[Reading]:
        """Raw readings of one device in [since_us, until_us)."""
        store = self._required()
        with self._lock:
            return store.fetch_readings(
                device_id=device_id,
                metric=metric,
                since_us=since_us,
                until_us=until_us,
                limit=limit,
            )

    def buckets(
        self, device_id: str, metric: str, bucket_s: int, since_us: int, until_us: int
    ) -> list[Bucket]:
        """Min/avg/max per bucket of one device's metric."""
        store = self._required()
        with self._lock:
            return store.bucketed(device_id, metric, bucket_s, since_us, until_us)

    def _required(self) -> ReadingStore:
        if self._store is None:
            raise NoReadingStore("no reading store configured")
        return self._store


class NoReadingStore(LookupError):
    """A route needs readings but the API was started without a reading store (503)."""


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Shared by every request of one app; kept in ``app.state.context``."""

    store: ServiceStore
    authenticate: Authenticate
    limits: RateLimits
    sla: SlaConfig
    clock: Callable[[], datetime]
    telemetry: Telemetry
