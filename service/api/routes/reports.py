"""The half-yearly HTML service report of one hospital."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse

from service.api.deps import Id, NowDep, ReadingsDep, SlaDep, StaffDep, StoreDep
from service.api.schemas import Role
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
    day: date | None = None,
) -> str:
    """The half-yearly HTML report of one hospital for the half-year containing ``day``."""
    site = store.site(site_id)
    if site is None or (who.role is Role.HOSPITAL and who.subject != site_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id} not found")
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
