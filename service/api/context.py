"""What every request of one app shares: stores, how callers are known, limits, SLA and clock."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from contract import AlertEvent, Reading, WoundBaseline
from infra.telemetry.base import AlertKey, Bucket, ReadingStore, alert_key
from service.api.auth import Authenticate
from service.api.rate import RateLimits
from service.sla import SlaConfig
from service.store import ServiceStore

_CHUNK = 10_000  # alert events per query when all of a period's are wanted


class Telemetry:
    """The optional reading stores: each holds one connection, so each serves one request at a
    time (FastAPI runs sync routes in a thread pool); several let requests run side by side."""

    def __init__(self, stores: ReadingStore | Sequence[ReadingStore] | None) -> None:
        if stores is None:
            stores = ()
        elif not isinstance(stores, Sequence):
            stores = (stores,)
        self._free: queue.Queue[ReadingStore] = queue.Queue()
        for store in stores:
            self._free.put(store)
        self.available = bool(stores)  # whether a reading store is configured

    @contextmanager
    def _store(self) -> Iterator[ReadingStore]:
        """A free store for the block; NoReadingStore (503) without any."""
        if not self.available:
            raise NoReadingStore("no reading store configured")
        store = self._free.get()
        try:
            yield store
        finally:
            self._free.put(store)

    def alerts(self, device_id: str | None) -> list[AlertEvent]:
        """Alert events of one device or of all; none without a reading store."""
        if not self.available:
            return []
        with self._store() as store:
            return store.fetch_alert_events(device_id)

    def alert_page(
        self,
        device_ids: Sequence[str] | None,
        after: AlertKey | None,
        limit: int,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[AlertEvent]:
        """One time-ordered page of the alert events of ``device_ids`` (None: all) in
        [since_us, until_us); none without a reading store."""
        if not self.available:
            return []
        with self._store() as store:
            return store.alert_page(
                device_ids, after=after, limit=limit, since_us=since_us, until_us=until_us
            )

    def alerts_between(
        self, device_ids: Sequence[str], since_us: int, until_us: int
    ) -> list[AlertEvent]:
        """Every alert event of ``device_ids`` in [since_us, until_us), page by page."""
        found: list[AlertEvent] = []
        after: AlertKey | None = None
        while True:
            more = self.alert_page(device_ids, after, _CHUNK, since_us, until_us)
            found += more
            if len(more) < _CHUNK:
                return found
            after = alert_key(more[-1])

    def active_alerts(self, device_ids: Sequence[str]) -> list[AlertEvent]:
        """The alerts of ``device_ids`` not cleared; none without a reading store."""
        if not self.available:
            return []
        with self._store() as store:
            return store.active_alerts(device_ids)

    def baselines(self, device_ids: Sequence[str]) -> list[WoundBaseline]:
        """The rules' learnt baselines of ``device_ids``; none without a reading store."""
        if not self.available:
            return []
        with self._store() as store:
            return store.baselines(device_ids)

    def latest(self, device_ids: Sequence[str], since_us: int | None) -> list[Reading]:
        """The latest reading per metric of each device; none without a reading store."""
        if not self.available:
            return []
        with self._store() as store:
            return store.latest_by_device(device_ids, since_us)

    def readings(
        self, device_id: str, metric: str | None, since_us: int, until_us: int, limit: int
    ) -> list[Reading]:
        """Raw readings of one device in [since_us, until_us)."""
        with self._store() as store:
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
        with self._store() as store:
            return store.bucketed(device_id, metric, bucket_s, since_us, until_us)


class NoReadingStore(LookupError):
    """A route needs readings but the API was started without a reading store (503)."""


HEAVY_AT_ONCE = 2


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Shared by every request of one app; kept in ``app.state.context``."""

    store: ServiceStore
    authenticate: Authenticate
    limits: RateLimits
    sla: SlaConfig
    clock: Callable[[], datetime]
    telemetry: Telemetry
    # Reports, site boards and audit verification each hold (or walk) a site's or the log's
    # rows: only this many run at once, so memory stays bounded however many ask; they are
    # CPU-bound, so more at once would not finish sooner.
    heavy: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(HEAVY_AT_ONCE)
    )
