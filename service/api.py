"""REST API over the service desk: bearer tokens, four roles, each seeing only what it may.

admin sees everything; an engineer sees everything and moves the tickets assigned to them;
hospital staff see only their site's devices and tickets; a patient sees only their own kit.
401: no or unknown token. 403: the caller's role may never use the route or send the event.
404: the object does not exist *or* lies outside the caller's scope (ids cannot be probed).
Every write goes through ``desk`` and lands in the hash-chained audit log.
"""

# No ``from __future__ import annotations``: FastAPI must see the closure-local ``Caller`` type.
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contract import METRICS, AlertEvent
from infra.telemetry.base import ReadingStore
from infra.time_us import us_from_datetime
from service import desk
from service.audit import verify
from service.kpis import attainment, failure_rate_by_model, first_time_fix, problem_database
from service.lifecycle import (
    Accept,
    Arrive,
    Close,
    Depart,
    Dispatch,
    Event,
    FollowUp,
    Pause,
    Resolve,
    Resume,
    SignOff,
    TransitionError,
)
from service.model import (
    Device,
    Engineer,
    Patient,
    Site,
    StateChange,
    Ticket,
    TicketKind,
    TicketState,
    Tier,
)
from service.report import half_year, hospital_report
from service.sla import Clock, SlaConfig, sla_status
from service.store import ServiceStore, open_service_store

# Ids in paths: letters, digits and ._:- only, so nothing odd reaches a database or a log line.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
Id = Annotated[str, Path(pattern=ID_PATTERN)]
MAX_BUCKETS = 10_000


class Role(StrEnum):
    """Who is calling."""

    ADMIN = "admin"
    ENGINEER = "engineer"
    HOSPITAL = "hospital"
    PATIENT = "patient"


class Principal(BaseModel):
    """An authenticated caller; ``subject`` is the engineer, site or patient id."""

    model_config = ConfigDict(frozen=True)

    role: Role
    subject: str | None = None


class NewTicket(BaseModel):
    """A one-click repair request."""

    device_id: str
    title: str = ""
    tier: Tier = Tier.GENERAL


class ReadingOut(BaseModel):
    """One stored reading."""

    device_id: str
    metric: str
    value: float
    unit: str
    ts_us: int
    seq: int


class BucketOut(BaseModel):
    """Min, avg, max and count of one metric in one time bucket."""

    bucket_start_us: int
    min: float
    avg: float
    max: float
    samples: int


class Inspection(BaseModel):
    """A past inspection of a device: the recorded date or a resolved preventive ticket."""

    on: date
    ticket_id: str | None = None


class DeviceFile(BaseModel):
    """Everything about one device: "one device, one file"."""

    device: Device
    site: Site | None
    tickets: list[Ticket]
    alerts: list[AlertEvent]
    inspections: list[Inspection]
    parts: list[str]
    links: dict[str, str]


class EventRequest(BaseModel):
    """A lifecycle event by name with its fields."""

    event: str
    engineer_id: str = ""
    reason: str = ""
    note: str = ""
    fault: str = ""
    resolution: str = ""
    parts: list[str] = []
    signer: str = ""
    report: str = ""
    satisfaction: Annotated[int, Field(ge=1, le=5)] = 5


# Which roles may send which event; engineers additionally only on their own tickets.
_EVENT_ROLES: dict[str, frozenset[Role]] = {
    "dispatch": frozenset({Role.ADMIN}),
    "accept": frozenset({Role.ADMIN, Role.ENGINEER}),
    "arrive": frozenset({Role.ADMIN, Role.ENGINEER}),
    "depart": frozenset({Role.ADMIN, Role.ENGINEER}),
    "pause": frozenset({Role.ADMIN, Role.ENGINEER}),
    "resume": frozenset({Role.ADMIN, Role.ENGINEER}),
    "resolve": frozenset({Role.ADMIN, Role.ENGINEER}),
    "sign_off": frozenset({Role.ADMIN, Role.HOSPITAL, Role.PATIENT}),
    "follow_up": frozenset({Role.ADMIN}),
    "close": frozenset({Role.ADMIN}),
}


def _event(body: EventRequest) -> Event:
    builders: dict[str, Callable[[], Event]] = {
        "dispatch": lambda: Dispatch(body.engineer_id, body.reason or "manual dispatch"),
        "accept": Accept,
        "arrive": Arrive,
        "depart": lambda: Depart(body.note),
        "pause": lambda: Pause(body.note),
        "resume": Resume,
        "resolve": lambda: Resolve(body.fault, body.resolution, tuple(body.parts)),
        "sign_off": lambda: SignOff(body.signer, body.report.encode()),
        "follow_up": lambda: FollowUp(body.satisfaction),
        "close": Close,
    }
    return builders[body.event]()


def _token_key(token: str) -> str:
    # Only token digests are held in memory, so a dump of the process does not leak tokens.
    return hashlib.sha256(token.encode()).hexdigest()


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def create_app(
    store: ServiceStore,
    tokens: Mapping[str, Principal],
    config: SlaConfig | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    readings: ReadingStore | None = None,
) -> FastAPI:
    """The API over ``store`` (and ``readings``, for telemetry); tokens map to principals."""
    sla = config or SlaConfig()
    principals = {_token_key(t): p for t, p in tokens.items()}
    bearer = HTTPBearer(auto_error=False)
    # Reading stores hold one connection; FastAPI calls sync routes from a thread pool.
    readings_lock = threading.Lock()
    app = FastAPI(title="vigil service", version="0.2.0")

    @app.middleware("http")
    async def refuse_nul(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # PostgreSQL text cannot hold NUL; refuse it at the door rather than fail in the store.
        body = await request.body()
        if b"\\u0000" in body or b"\x00" in body or "\x00" in str(request.url):
            return JSONResponse({"detail": "NUL characters are not accepted"}, status_code=422)
        return await call_next(request)

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        found = principals.get(_token_key(credentials.credentials)) if credentials else None
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or missing token")
        return found

    Caller = Annotated[Principal, Depends(caller)]

    def require(who: Principal, *roles: Role) -> None:
        if who.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who.role} may not use this")

    def actor(who: Principal) -> str:
        return f"{who.role}:{who.subject or '-'}"

    def sees_device(who: Principal, device: Device) -> bool:
        if who.role in (Role.ADMIN, Role.ENGINEER):
            return True
        if who.role is Role.HOSPITAL:
            return device.site_id == who.subject
        return device.patient is not None and device.patient == who.subject

    def visible_device(who: Principal, device_id: str) -> Device:
        device = store.device(device_id)
        # Not-found and forbidden look alike, so ids of other hospitals cannot be probed.
        if device is None or not sees_device(who, device):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id} not found")
        return device

    def visible_devices(who: Principal) -> list[Device]:
        if who.role is Role.HOSPITAL and who.subject:
            return store.devices(site_id=who.subject)
        return [d for d in store.devices() if sees_device(who, d)]

    def visible_ticket(who: Principal, ticket_id: str) -> Ticket:
        ticket = store.ticket(ticket_id)
        if ticket is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} not found")
        visible_device(who, ticket.device_id)
        return ticket

    def reading_store() -> ReadingStore:
        if readings is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no reading store configured")
        return readings

    def alerts_of(device_id: str | None) -> list[AlertEvent]:
        if readings is None:
            return []
        with readings_lock:
            return readings.fetch_alert_events(device_id)

    def put(who: Principal, item: Site | Device | Patient | Engineer, key: str) -> None:
        require(who, Role.ADMIN)
        if item.id != key:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"body id {item.id} is not {key}"
            )
        desk.put_installed(store, item, actor(who), clock())

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/devices")
    def devices(who: Caller) -> list[Device]:
        return visible_devices(who)

    @app.get("/devices/{device_id}")
    def device(who: Caller, device_id: Id) -> Device:
        return visible_device(who, device_id)

    @app.put("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
    def put_device(who: Caller, device_id: Id, body: Device) -> None:
        require(who, Role.ADMIN)
        if store.site(body.site_id) is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"site {body.site_id} does not exist"
            )
        put(who, body, device_id)

    @app.put("/sites/{site_id}", status_code=status.HTTP_204_NO_CONTENT)
    def put_site(who: Caller, site_id: Id, body: Site) -> None:
        put(who, body, site_id)

    @app.put("/engineers/{engineer_id}", status_code=status.HTTP_204_NO_CONTENT)
    def put_engineer(who: Caller, engineer_id: Id, body: Engineer) -> None:
        put(who, body, engineer_id)

    @app.put("/patients/{patient_id}", status_code=status.HTTP_204_NO_CONTENT)
    def put_patient(who: Caller, patient_id: Id, body: Patient) -> None:
        put(who, body, patient_id)

    @app.get("/devices/{device_id}/file")
    def device_file(who: Caller, device_id: Id) -> DeviceFile:
        found = visible_device(who, device_id)
        tickets = store.tickets(device_ids=[device_id])
        inspections = [Inspection(on=found.last_inspection)] if found.last_inspection else []
        inspections += [
            Inspection(on=done.date(), ticket_id=t.id)
            for t in tickets
            if t.kind is TicketKind.PREVENTIVE
            if (done := t.entered(TicketState.RESOLVED)) is not None
        ]
        base = f"/devices/{device_id}"
        return DeviceFile(
            device=found,
            site=store.site(found.site_id),
            tickets=tickets,
            alerts=alerts_of(device_id),
            inspections=sorted(inspections, key=lambda i: i.on),
            parts=sorted({p for t in tickets for p in t.parts}),
            links={
                "readings": f"{base}/readings",
                "alerts": f"{base}/alerts",
                "tickets": f"/tickets?device_id={device_id}",
            },
        )

    @app.get("/devices/{device_id}/readings")
    def device_readings(
        who: Caller,
        device_id: Id,
        metric: Annotated[str | None, Query(description="catalog metric name")] = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        bucket_s: Annotated[int | None, Query(ge=1, le=366 * 86400)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[ReadingOut] | list[BucketOut]:
        """Raw readings, or with ``bucket_s`` min/avg/max per bucket of one metric."""
        visible_device(who, device_id)
        if metric is not None and metric not in METRICS:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown metric {metric}")
        end = until or clock()
        start = since or end - timedelta(days=1)
        if start >= end:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since must be < until")
        since_us, until_us = us_from_datetime(start), us_from_datetime(end)
        source = reading_store()
        if bucket_s is None:
            with readings_lock:
                rows = source.fetch_readings(
                    device_id=device_id,
                    metric=metric,
                    since_us=since_us,
                    until_us=until_us,
                    limit=limit,
                )
            return [ReadingOut(**r._asdict()) for r in rows]
        if metric is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "buckets need a metric")
        if (until_us - since_us) // (bucket_s * 1_000_000) > MAX_BUCKETS:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"more than {MAX_BUCKETS} buckets"
            )
        with readings_lock:
            buckets = source.bucketed(device_id, metric, bucket_s, since_us, until_us)
        return [BucketOut(**b._asdict()) for b in buckets]

    @app.get("/devices/{device_id}/alerts")
    def device_alerts(who: Caller, device_id: Id) -> list[AlertEvent]:
        visible_device(who, device_id)
        return alerts_of(device_id)

    @app.get("/alerts")
    def alerts(who: Caller) -> list[AlertEvent]:
        if who.role in (Role.ADMIN, Role.ENGINEER):
            return alerts_of(None)
        mine = {d.id for d in visible_devices(who)}
        return [a for a in alerts_of(None) if a.device_id in mine]

    @app.get("/tickets")
    def tickets(
        who: Caller,
        state: TicketState | None = None,
        device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ) -> list[Ticket]:
        mine = {d.id for d in visible_devices(who)}
        wanted = None if device_id is None else [device_id]
        return [
            t
            for t in store.tickets(None if state is None else [state], wanted)
            if t.device_id in mine
        ]

    @app.get("/tickets/{ticket_id}")
    def ticket(who: Caller, ticket_id: Id) -> Ticket:
        return visible_ticket(who, ticket_id)

    @app.get("/tickets/{ticket_id}/transitions")
    def ticket_transitions(who: Caller, ticket_id: Id) -> list[StateChange]:
        return list(visible_ticket(who, ticket_id).history)

    @app.get("/tickets/{ticket_id}/sla")
    def ticket_sla(who: Caller, ticket_id: Id) -> dict[str, Any]:
        status_ = sla_status(visible_ticket(who, ticket_id), clock(), sla)
        return {
            "ticket_id": status_.ticket_id,
            "tier": status_.tier,
            "breached": status_.breached,
            **{
                c.clock.value: {
                    "deadline": c.deadline.isoformat() if c.deadline else None,
                    "remaining_s": c.remaining.total_seconds(),
                    "breached": c.breached,
                    "paused": c.paused,
                    "stopped_at": c.stopped_at.isoformat() if c.stopped_at else None,
                }
                for c in (status_.respond, status_.resolve)
            },
        }

    @app.post("/tickets", status_code=status.HTTP_201_CREATED)
    def open_ticket(who: Caller, body: NewTicket) -> Ticket:
        visible_device(who, body.device_id)
        return desk.open_ticket(
            store, body.device_id, body.tier, body.title, actor(who), uuid.uuid4().hex, clock()
        )

    @app.post("/tickets/{ticket_id}/events")
    def ticket_event(who: Caller, ticket_id: Id, body: EventRequest) -> Ticket:
        current = visible_ticket(who, ticket_id)
        roles = _EVENT_ROLES.get(body.event)
        if roles is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown event {body.event}"
            )
        if who.role not in roles or (who.role is Role.ENGINEER and current.assignee != who.subject):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who.role} may not {body.event} this")
        if body.event == "dispatch" and store.engineer(body.engineer_id) is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"engineer {body.engineer_id} not found"
            )
        try:
            return desk.apply(store, ticket_id, _event(body), actor(who), clock())
        except TransitionError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @app.get("/kpis")
    def kpis(who: Caller) -> dict[str, Any]:
        """SLA attainment, first-time fix, failure rates and problems over what the caller sees."""
        require(who, Role.ADMIN, Role.ENGINEER, Role.HOSPITAL)
        now = clock()
        fleet = visible_devices(who)
        ids = {d.id for d in fleet}
        mine = [t for t in store.tickets() if t.device_id in ids]
        ftf = first_time_fix(mine)
        return {
            "at": now.isoformat(),
            "tickets": len(mine),
            **{
                f"{clock_.value}_attainment": {
                    "decided": a.decided,
                    "met": a.met,
                    "percent": _pct(a.percent),
                    "mean_elapsed_s": a.mean_elapsed.total_seconds() if a.mean_elapsed else None,
                }
                for clock_ in Clock
                if (a := attainment(mine, clock_, now, sla))
            },
            "first_time_fix": {
                "fixed_first_time": ftf.numerator,
                "resolved": ftf.denominator,
                "percent": _pct(ftf.percent),
            },
            "failure_rate_by_model": [
                {
                    "model": r.group,
                    "devices": r.devices,
                    "failures": r.failures,
                    "device_years": round(r.device_years, 4),
                    "per_device_year": r.per_device_year,
                }
                for r in failure_rate_by_model(fleet, mine, now)
            ],
            "problems": [
                {"model": p.model, "fault": p.fault, "count": p.count, "devices": p.devices}
                for p in problem_database(fleet, mine)
            ],
        }

    @app.get("/reports/{site_id}", response_class=HTMLResponse)
    def report(who: Caller, site_id: Id, day: date | None = None) -> str:
        """The half-yearly HTML report of one hospital for the half-year containing ``day``."""
        require(who, Role.ADMIN, Role.ENGINEER, Role.HOSPITAL)
        site = store.site(site_id)
        if site is None or (who.role is Role.HOSPITAL and who.subject != site_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id} not found")
        start, end = half_year(day or clock().date())
        log = store.audit_log()
        # Without a reading store there is no alert history: the report says so, not "zero".
        alerts = alerts_of(None) if readings is not None else None
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

    @app.get("/audit/verify")
    def audit_verify(who: Caller) -> dict[str, Any]:
        require(who, Role.ADMIN)
        result = verify(store.audit_log())
        return {
            "ok": result.ok,
            "problems": [{"seq": p.seq, "reason": p.reason} for p in result.problems],
        }

    return app


def app_from_env() -> FastAPI:
    """App for ``uvicorn --factory``; see docs/service.md for the environment variables.

    VIGIL_SERVICE_STORE_URL (or the older VIGIL_SERVICE_DB, a SQLite path), VIGIL_SERVICE_TOKENS
    (JSON: token → {"role", "subject"}) and optionally VIGIL_READINGS_URL (a ReadingStore URL).
    """
    url = os.environ.get("VIGIL_SERVICE_STORE_URL") or (
        "sqlite:///" + os.environ.get("VIGIL_SERVICE_DB", "vigil-service.db")
    )
    raw = json.loads(os.environ.get("VIGIL_SERVICE_TOKENS", "{}"))
    tokens = {token: Principal.model_validate(p) for token, p in raw.items()}
    readings: ReadingStore | None = None
    if readings_url := os.environ.get("VIGIL_READINGS_URL"):
        from infra.telemetry import open_store

        readings = open_store(readings_url)
        readings.migrate()
    return create_app(open_service_store(url), tokens, readings=readings)
