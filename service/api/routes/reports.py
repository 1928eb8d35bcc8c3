"""The half-yearly HTML service report of one hospital."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.api.deps import Id, NowDep, ReadingsDep, SlaDep, StaffDep, StoreDep
from service.api.scope import visible_site
from service.api.text import ApiDate
from service.report import half_year, hospital_report

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/{site_id}", response_class=HTMLResponse)
def report(
    who: StaffDep,
    store: StoreDep,
    readings: ReadingsDep,
    sla: SlaDep,
    now: NowDep,
    site_id: Id,
    day: ApiDate | None = None,
) -> str:
    """The half-yearly HTML report of one hospital for the half-year containing ``day``."""
    site = visible_site(store, who, site_id)
    start, end = half_year(day or now.date())
    log = store.audit_log()
    # Without a reading store there is no alert history: the report says so, not "zero".
    alerts = readings.alerts(None) if readings.available else None
    return hospital_report(
        site,
        store.devices(site_id=site_id),
        store.tickets(),
        start,
        end,
        sla,
        log[-1].hash if log else "",
        alerts=alerts,
    )
