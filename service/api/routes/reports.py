"""The half-yearly HTML service report of one hospital."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from infra.time_us import us_from_datetime
from service.api.context import Telemetry
from service.api.deps import HeavyDep, Id, NowDep, ReadingsDep, SlaDep, StaffDep, StoreDep
from service.api.scope import visible_site
from service.api.text import ApiDate
from service.model import Site
from service.report import WarrantyAdviceConfig, half_year, hospital_report
from service.report.period import add_months
from service.sla import SlaConfig
from service.store import ServiceStore
from service.store.queries import CreditQuery, DeviceQuery, FleetRow, TicketQuery

# Device ids per query for the advised devices' older tickets: far below any bound on bound
# parameters (SQLite's default was 999).
_IDS_PER_QUERY = 500

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/{site_id}", response_class=HTMLResponse)
def report(
    who: StaffDep,
    store: StoreDep,
    readings: ReadingsDep,
    sla: SlaDep,
    now: NowDep,
    heavy: HeavyDep,
    site_id: Id,
    day: ApiDate | None = None,
) -> str:
    """The half-yearly HTML report of one hospital for the half-year containing ``day``."""
    site = visible_site(store, who, site_id)
    with heavy:  # a few at a time: each holds a hospital's devices and tickets
        return _report(store, readings, sla, site, day or now.date())


def _report(store: ServiceStore, readings: Telemetry, sla: SlaConfig, site: Site, day: date) -> str:
    """The report's HTML: only this site's rows are read, so the work grows with the hospital."""
    site_id = site.id
    start, end = half_year(day)
    head = store.audit_head()  # one row, however long the log
    # The devices as narrow rows, the tickets of the period as documents, and older tickets only
    # of the devices whose warranty advice lists their failure history: not the site's history.
    devices = store.fleet_rows(DeviceQuery(site_id=site_id, limit=None))
    period = TicketQuery(site_id=site_id, opened_since=start, opened_before=end, limit=None)
    tickets = [t for t, _ in store.ticket_page(period)]
    advised = list(_advised(devices, end, WarrantyAdviceConfig()))
    for first in range(0, len(advised), _IDS_PER_QUERY):
        chunk = tuple(advised[first : first + _IDS_PER_QUERY])
        older = TicketQuery(site_id=site_id, device_ids=chunk, opened_before=start, limit=None)
        tickets += [t for t, _ in store.ticket_page(older)]
    # Without a reading store there is no alert history: the report says so, not "zero".
    alerts = None
    if readings.available:
        ids = [d.id for d in devices]
        alerts = readings.alerts_between(ids, us_from_datetime(start), us_from_datetime(end))
    credits = store.credits(CreditQuery(site_id=site_id, since=start, until=end))
    return hospital_report(
        site,
        devices,
        tickets,
        start,
        end,
        sla,
        head.hash if head else "",
        alerts=alerts,
        credits=credits,
    )


def _advised(
    devices: Sequence[FleetRow], end: datetime, policy: WarrantyAdviceConfig
) -> Iterator[str]:
    """Ids of the devices whose warranty ends in the advice window after ``end``."""
    horizon = add_months(end.date(), policy.horizon_months)
    for d in devices:
        if d.warranty_end is not None and end.date() <= d.warranty_end < horizon:
            yield d.id
