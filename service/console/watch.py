"""What the live watcher asks the stores: alert events and ticket changes after the last seen.

Both are keyset reads on indexed columns (alert time order, tickets' ``updated_us``), bounded
per poll; the first poll only notes where the stores stand now. Both columns hold the instants
the events carry, not commit times: a change stamped before the last one seen (a clock far
behind) is not noticed, until the page is reloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from infra.telemetry.base import AlertKey, alert_key
from infra.time_us import us_from_datetime
from service.api.context import Telemetry
from service.console.live import Change
from service.store import ServiceStore
from service.store.queries import EVERY_TICKET, Position, TicketQuery

BATCH = 500  # changes read per kind per poll; more wait for the next poll


class StoreWatcher:
    """A ``Probe`` over the service store and (optional) reading store."""

    def __init__(
        self, store: ServiceStore, telemetry: Telemetry, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._clock = clock
        self._alert_after: AlertKey | None = None
        self._alert_since: int | None = None
        self._ticket_since: datetime | None = None
        self._ticket_after: Position | None = None

    def __call__(self) -> list[Change]:
        """The changes since the previous call (none on the first)."""
        changes = [self._alerts(), self._tickets()]
        return [c for c in changes if c is not None]

    def _alerts(self) -> Change | None:
        if not self._telemetry.available:
            return None
        if self._alert_since is None:
            self._alert_since = us_from_datetime(self._clock())
        found = self._telemetry.alert_page(None, self._alert_after, BATCH, self._alert_since)
        if not found:
            return None
        self._alert_after = alert_key(found[-1])
        return self._change("alert", {a.device_id for a in found})

    def _tickets(self) -> Change | None:
        if self._ticket_since is None:
            # A little back, so a change committed while the feed starts is not missed.
            self._ticket_since = self._clock() - timedelta(seconds=1)
        query = TicketQuery(
            scope=EVERY_TICKET,
            updated_since=self._ticket_since,
            sort="updated",
            after=self._ticket_after,
            limit=BATCH,
        )
        found = self._store.ticket_page(query)
        if not found:
            return None
        self._ticket_after = found[-1][1]
        return self._change("ticket", {t.device_id for t, _ in found})

    def _change(self, kind: str, device_ids: Iterable[str]) -> Change:
        sites: set[str] = set()
        patients: set[str] = set()
        devices = frozenset(device_ids)
        for device_id in devices:
            device = self._store.device(device_id)
            if device is not None:
                sites.add(device.site_id)
                if device.patient:
                    patients.add(device.patient)
        return Change(kind, frozenset(sites), devices, frozenset(patients))
