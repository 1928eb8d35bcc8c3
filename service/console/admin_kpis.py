"""KPIs with plots, the half-yearly report download and the audit chain's status (admins).

Each is the REST API's own computation, called as a function: ``kpis_from_facts`` over the
store's SQL aggregates, the report route's HTML, the audit route's streamed verification. So
the console and the API can never disagree.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.api.deps import HeavyDep, Id, NowDep, ReadingsDep, SlaDep, StoreDep
from service.api.routes.audit import audit_verify
from service.api.routes.kpis import kpis_from_facts
from service.api.routes.reports import report
from service.api.schemas import Kpis, Role
from service.api.scope import scope_of, visible_site
from service.api.text import ID_PATTERN, ApiDate
from service.console.deps import session_in
from service.console.i18n import N_
from service.console.nav import NavItem
from service.console.render import page
from service.console.session import Session
from service.report import half_year
from service.store.queries import Scope

router = APIRouter()
_ADMIN = frozenset({Role.ADMIN})
NAV = (
    NavItem("/console/admin/kpis", N_("KPIs and reports"), _ADMIN, order=41),
    NavItem("/console/admin/audit", N_("Audit chain"), _ADMIN, order=42),
)

AdminSession = Annotated[Session, Depends(session_in(Role.ADMIN))]


def plot_data(kpis: Kpis) -> dict[str, Any]:
    """What the KPI page's plots draw: per model, failures per device-year and devices."""
    rates = kpis.failure_rate_by_model
    return {
        "models": [r.model for r in rates],
        "per_device_year": [r.per_device_year for r in rates],
        "attainment": {
            "respond": kpis.respond_attainment.percent,
            "resolve": kpis.resolve_attainment.percent,
            "first_time_fix": kpis.first_time_fix.percent,
        },
    }


@router.get("/kpis", response_class=HTMLResponse)
def kpi_page(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    sla: SlaDep,
    now: NowDep,
    site: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    """SLA attainment, first-time fix, failure rates and problems, with plots."""
    scope = scope_of(session.who)
    if site:
        visible_site(store, session.who, site)  # 404 for an unknown site
        scope = Scope(site_id=site)
    kpis = kpis_from_facts(store.kpi_facts(scope, now), now, sla)
    start, end = half_year(now.date())
    values = {
        "kpis": kpis,
        "plot": plot_data(kpis),
        "site": site or "",
        "sites": store.sites(),
        "half_start": start.date(),
        "half_end": end.date(),
        "today": now.date(),
    }
    return page(request, "admin_kpis.html", values, session)


@router.get("/reports/{site_id}")
def report_download(
    session: AdminSession,
    store: StoreDep,
    readings: ReadingsDep,
    sla: SlaDep,
    now: NowDep,
    heavy: HeavyDep,
    site_id: Id,
    day: ApiDate | None = None,
) -> Response:
    """The half-yearly HTML report of one hospital, as a file to keep."""
    html = report(session.who, store, readings, sla, now, heavy, site_id, day)
    start, _ = half_year(day or now.date())
    half = "H1" if start.month == 1 else "H2"
    name = f"vigil-report-{site_id}-{start.year}-{half}.html"
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.get("/reports")
def report_of_form(
    session: AdminSession,
    site: Annotated[str, Query(pattern=ID_PATTERN)],
    day: ApiDate,
) -> Response:
    """The report form's answer: on to that site's report of the half-year holding ``day``."""
    target = f"/console/admin/reports/{site}?day={day.isoformat()}"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: AdminSession, store: StoreDep) -> HTMLResponse:
    """The audit chain's head, and a button that verifies the whole chain now."""
    values = {"head": store.audit_head(), "result": None}
    return page(request, "admin_audit.html", values, session)


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_check(
    request: Request, session: AdminSession, store: StoreDep, heavy: HeavyDep
) -> HTMLResponse:
    """Verify the chain (the API's streamed check) and show the result."""
    result = audit_verify(session.who, store, heavy)
    values = {"head": store.audit_head(), "result": result}
    fragment = bool(request.headers.get("HX-Request"))
    return page(
        request, "admin_audit_result.html" if fragment else "admin_audit.html", values, session
    )
