"""The installed base for admins: sites, devices, engineers and patients, listed and edited.

Forms are checked by the API's request models (``admin_forms``) and written by
``desk.put_installed``, so every change has the API's audit entry. A bad form comes back with
each problem next to its field and a 422; an id already taken, 409; never a 5xx.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service import desk
from service.api.deps import Id, NowDep, StoreDep
from service.api.schemas import Role
from service.api.scope import actor, scope_of
from service.api.text import ID_PATTERN
from service.console import admin_kpis
from service.console.admin_forms import KINDS, Kind, Outcome, check, existing, posted, references
from service.console.deps import session_in
from service.console.i18n import N_
from service.console.nav import NavItem
from service.console.render import page
from service.console.session import Session
from service.store import ServiceStore
from service.store.queries import DeviceQuery, Scope

router = APIRouter(prefix="/console/admin")
router.include_router(admin_kpis.router)
_ADMIN = frozenset({Role.ADMIN})
NAV = (
    NavItem("/console/admin/base", N_("Installed base"), _ADMIN, order=40),
    *admin_kpis.NAV,
)

AdminSession = Annotated[Session, Depends(session_in(Role.ADMIN))]
KindName = Annotated[str, Path(pattern="^(sites|devices|engineers|patients)$")]
DEVICE_PAGE = 100
_ID = re.compile(ID_PATTERN)


def optional_id(value: str, name: str) -> str | None:
    """An id filter from a form (``""``: none); 422 when it is not an id."""
    value = value.strip()
    if not value:
        return None
    if not _ID.match(value):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name} is not a valid id")
    return value


def scope(session: Session) -> Scope:
    """The session's caller's scope, as the API computes it."""
    return scope_of(session.who)


@router.get("/base", response_class=HTMLResponse)
def installed_base(
    request: Request,
    session: AdminSession,
    store: StoreDep,
    site: Annotated[str, Query(max_length=128)] = "",
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    patient: Annotated[str | None, Query(max_length=128)] = None,
) -> HTMLResponse:
    """Sites, engineers, one page of devices (optionally of one site), a patient by id."""
    site_id = optional_id(site, "site")
    query = DeviceQuery(scope=scope(session), site_id=site_id, after=after, limit=DEVICE_PAGE + 1)
    devices = store.device_page(query)
    found_patient = store.patient(patient.strip()) if patient and patient.strip() else None
    values = {
        "sites": store.sites(),
        "engineers": store.engineers(),
        "devices": devices[:DEVICE_PAGE],
        "next_after": devices[DEVICE_PAGE - 1].id if len(devices) > DEVICE_PAGE else None,
        "site": site_id or "",
        "patient_query": (patient or "").strip(),
        "patient": found_patient,
    }
    return page(request, "admin_base.html", values, session)


def _form_page(
    request: Request,
    session: Session,
    kind: Kind,
    values: dict[str, Any],
    *,
    key: str | None,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    shown = {"kind": kind, "values": values, "key": key, "errors": errors or {}}
    return page(request, "admin_form.html", shown, session, status_code=status_code)


@router.get("/{kind}/new", response_class=HTMLResponse)
def new_form(request: Request, session: AdminSession, kind: KindName) -> HTMLResponse:
    """An empty form for a new record."""
    return _form_page(request, session, KINDS[kind], {}, key=None)


@router.get("/{kind}/{key}/edit", response_class=HTMLResponse)
def edit_form(
    request: Request, session: AdminSession, store: StoreDep, kind: KindName, key: Id
) -> HTMLResponse:
    """The form of a stored record."""
    item = existing(store, kind, key)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return _form_page(request, session, KINDS[kind], KINDS[kind].to_form(item), key=key)


@router.post("/{kind}/new", response_class=HTMLResponse)
async def create(
    request: Request, session: AdminSession, store: StoreDep, now: NowDep, kind: KindName
) -> Response:
    """Create a record (409 when its id is taken)."""
    raw = await request.form()
    values = _values(KINDS[kind], raw)
    return await run_in_threadpool(_save, request, session, store, now, kind, None, values)


@router.post("/{kind}/{key}/edit", response_class=HTMLResponse)
async def replace(
    request: Request, session: AdminSession, store: StoreDep, now: NowDep, kind: KindName, key: Id
) -> Response:
    """Replace a stored record (its id cannot change)."""
    raw = await request.form()
    values = {**_values(KINDS[kind], raw), "id": key}
    return await run_in_threadpool(_save, request, session, store, now, kind, key, values)


def _values(kind: Kind, raw: Any) -> dict[str, Any]:
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    multi = {name: [v for v in raw.getlist(name) if isinstance(v, str)] for name in raw}
    return posted(kind, form, multi)


def _save(
    request: Request,
    session: Session,
    store: ServiceStore,
    now: datetime,
    kind_name: str,
    key: str | None,
    values: dict[str, Any],
) -> Response:
    kind = KINDS[kind_name]
    outcome: Outcome = check(kind, values)
    code = status.HTTP_422_UNPROCESSABLE_CONTENT
    if outcome.item is not None:
        outcome.errors.update(references(store, outcome.item))
        if key is None and existing(store, kind_name, outcome.item.id) is not None:
            outcome.errors["id"] = N_("this id is already taken; edit that record instead")
            code = status.HTTP_409_CONFLICT
        if key is not None and existing(store, kind_name, key) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    if outcome.errors or outcome.item is None:
        shown = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in values.items()}
        return _form_page(
            request, session, kind, shown, key=key, errors=outcome.errors, status_code=code
        )
    desk.put_installed(store, outcome.item, actor(session.who), now)
    target = f"/console/admin/{kind_name}/{outcome.item.id}/edit?saved=1"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
