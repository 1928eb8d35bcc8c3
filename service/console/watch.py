"""What the live watcher asks the stores: alert events and ticket changes of the last minutes.

Both stores index the instants the events carry (an alert's time, a ticket's latest recorded
instant), not commit times, and events arrive late and out of order (gateway batches, an outbox
draining after an outage). So each poll reads, in keyset pages on those indexed columns,
everything stamped within ``LOOKBACK`` of now, and tells only what it has not told before
(alerts by their key, tickets by id and version). The first poll only notes what is there. A
change stamped more than ``LOOKBACK`` before it is committed is not pushed; the next reload of
the page shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timedelta

from infra.telemetry.base import AlertKey, alert_key
from infra.time_us import us_from_datetime
from service.api.context import Telemetry
from service.console.live import Change
from service.store import ServiceStore
from service.store.queries import EVERY_TICKET, Position, TicketQuery

log = logging.getLogger(__name__)

LOOKBACK = timedelta(minutes=2)
BATCH = 500  # rows per page
MAX_PAGES = 10  # per kind per poll: a window holding more is read no further (and logged)


class Told:
    """What has been told, by key, with each key's instant; forgets what left the window."""

    def __init__(self) -> None:
        self._at: dict[Hashable, int] = {}

    def fresh(self, key: Hashable, at_us: int) -> bool:
        """Whether ``key`` is new (and remember it)."""
        if key in self._at:
            return False
        self._at[key] = at_us
        return True

    def forget_before(self, floor_us: int) -> None:
        """Drop keys stamped before ``floor_us`` (they will not be read again)."""
        self._at = {k: at for k, at in self._at.items() if at >= floor_us}

    def __len__(self) -> int:
        return len(self._at)


class StoreWatcher:
    """A ``Probe`` over the service store and (optional) reading store."""

    def __init__(
        self, store: ServiceStore, telemetry: Telemetry, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._clock = clock
        self._alerts_told = Told()
        self._tickets_told = Told()
        self._started = False

    def __call__(self) -> list[Change]:
        """The changes since the previous call (none on the first)."""
        since = self._clock() - LOOKBACK
        alerts, tickets = self._alerts(since), self._tickets(since)
        first, self._started = not self._started, True
        changes = [self._change("alert", alerts), self._change("ticket", tickets)]
        return [] if first else [c for c in changes if c is not None]

    def _alerts(self, since: datetime) -> set[str]:
        if not self._telemetry.available:
            return set()
        since_us = us_from_datetime(since)
        devices: set[str] = set()
        after: AlertKey | None = None
        for _ in range(MAX_PAGES):
            page = self._telemetry.alert_page(None, after, BATCH, since_us)
            devices |= {a.device_id for a in page if self._alerts_told.fresh(alert_key(a), a.at_us)}
            if len(page) < BATCH:
                break
            after = alert_key(page[-1])
        else:
            log.warning("live feed: more than %d alert events in the look-back", BATCH * MAX_PAGES)
        self._alerts_told.forget_before(since_us)
        return devices

    def _tickets(self, since: datetime) -> set[str]:
        devices: set[str] = set()
        after: Position | None = None
        for _ in range(MAX_PAGES):
            query = TicketQuery(
                scope=EVERY_TICKET, updated_since=since, sort="updated", after=after, limit=BATCH
            )
            page = self._store.ticket_page(query)
            for ticket, position in page:
                if self._tickets_told.fresh((ticket.id, ticket.version), int(position[0])):
                    devices.add(ticket.device_id)
            if len(page) < BATCH:
                break
            after = page[-1][1]
        else:
            log.warning("live feed: over %d ticket changes in the look-back", BATCH * MAX_PAGES)
        self._tickets_told.forget_before(us_from_datetime(since))
        return devices

    def _change(self, kind: str, device_ids: Iterable[str]) -> Change | None:
        devices = frozenset(device_ids)
        if not devices:
            return None
        sites: set[str] = set()
        patients: set[str] = set()
        for device_id in devices:
            device = self._store.device(device_id)
            if device is not None:
                sites.add(device.site_id)
                if device.patient:
                    patients.add(device.patient)
        return Change(kind, frozenset(sites), devices, frozenset(patients))
