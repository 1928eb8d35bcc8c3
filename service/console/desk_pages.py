"""The desk's reference lists in the console: the knowledge base (searchable, for engineers and
the desk) and the vigilance list (tickets flagged "patient harm suspected", admin), with each
draft report to download. Both read one SQL page at a time, like their API routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from infra.time_us import us_from_datetime
from service.api.deps import Id, NowDep, StoreDep
from service.api.routes.vigilance import visible_draft
from service.api.schemas import Role
from service.api.text import ID_PATTERN
from service.console.deps import session_in
from service.console.i18n import N_
from service.console.nav import NavItem
from service.console.render import SECURITY_HEADERS, page
from service.console.session import Session
from service.store.queries import KnowledgeQuery
from service.vigilance import render_html

router = APIRouter(prefix="/console")
NAV = (
    NavItem("/console/knowledge", N_("Knowledge base"), frozenset({Role.ENGINEER, Role.ADMIN}), 40),
    NavItem("/console/vigilance", N_("Vigilance"), frozenset({Role.ADMIN}), 41),
)
PAGE = 50
INT64_MAX = 2**63 - 1  # the stores' integer columns; beyond it is a 422, not an overflow

DeskSession = Annotated[Session, Depends(session_in(Role.ENGINEER, Role.ADMIN))]
AdminSession = Annotated[Session, Depends(session_in(Role.ADMIN))]
Text = Annotated[str, Query(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
Key = Annotated[str, Query(max_length=128, pattern=f"^$|{ID_PATTERN}")]


@router.get("/knowledge", response_class=HTMLResponse)
def knowledge(
    request: Request,
    session: DeskSession,
    store: StoreDep,
    q: Text = "",
    after_model: Key = "",
    after_code: Key = "",
) -> HTMLResponse:
    """Entries holding every word of ``q`` (full text), by model and code, one page."""
    after = (after_model, after_code) if after_model and after_code else None
    found = store.knowledge_page(KnowledgeQuery(text=q or None, after=after, limit=PAGE + 1))
    values = {"q": q, "entries": found[:PAGE], "more": len(found) > PAGE}
    return page(request, "desk_knowledge.html", values, session)


@router.get("/vigilance", response_class=HTMLResponse)
def vigilance(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    after_us: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    after_ticket: Key = "",
) -> HTMLResponse:
    """Tickets flagged "patient harm suspected", oldest first, one page."""
    after = (after_us, after_ticket) if after_us is not None and after_ticket else None
    flags = store.harm_flags(PAGE + 1, after)
    shown = flags[:PAGE]
    last = shown[-1] if len(flags) > PAGE else None
    values = {
        "flags": shown,
        "next": None if last is None else (us_from_datetime(last.flagged_at), last.ticket_id),
    }
    return page(request, "desk_vigilance.html", values, session)


@router.get("/vigilance/{ticket_id}.html")
def vigilance_draft(session: AdminSession, store: StoreDep, now: NowDep, ticket_id: Id) -> Response:
    """The ticket's draft incident report, downloaded (a self-contained page of its own)."""
    html = render_html(visible_draft(store, session.who, ticket_id, now))
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'attachment; filename="vigil-vigilance-{ticket_id}.html"',
    }
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)
