"""REST API over the service desk: bearer tokens, four roles, each seeing only what it may.

admin sees everything; an engineer sees everything and moves the tickets assigned to them;
hospital staff see only their site's devices and tickets; a patient sees only their own kit.
"""

# No ``from __future__ import annotations``: FastAPI must see the closure-local ``Caller`` type.
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from service import desk
from service.audit import verify
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
from service.model import Device, Ticket, Tier
from service.sla import SlaConfig, sla_status
from service.store import ServiceStore, SqliteStore


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


class EventRequest(BaseModel):
    """A lifecycle event by name with its fields."""

    event: str
    engineer_id: str = ""
    reason: str = ""
    note: str = ""
    fault: str = ""
    resolution: str = ""
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
        "resolve": lambda: Resolve(body.fault, body.resolution),
        "sign_off": lambda: SignOff(body.signer, body.report.encode()),
        "follow_up": lambda: FollowUp(body.satisfaction),
        "close": Close,
    }
    return builders[body.event]()


def _token_key(token: str) -> str:
    # Only token digests are held in memory, so a dump of the process does not leak tokens.
    return hashlib.sha256(token.encode()).hexdigest()


def create_app(
    store: ServiceStore,
    tokens: Mapping[str, Principal],
    config: SlaConfig | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """The API over ``store``; ``tokens`` maps bearer tokens to principals."""
    sla = config or SlaConfig()
    principals = {_token_key(t): p for t, p in tokens.items()}
    bearer = HTTPBearer(auto_error=False)
    app = FastAPI(title="vigil service", version="0.1.0")

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        found = principals.get(_token_key(credentials.credentials)) if credentials else None
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or missing token")
        return found

    Caller = Annotated[Principal, Depends(caller)]

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

    def visible_ticket(who: Principal, ticket_id: str) -> Ticket:
        ticket = store.ticket(ticket_id)
        if ticket is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} not found")
        visible_device(who, ticket.device_id)
        return ticket

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/devices")
    def devices(who: Caller) -> list[Device]:
        return [d for d in store.devices() if sees_device(who, d)]

    @app.get("/devices/{device_id}")
    def device(who: Caller, device_id: str) -> Device:
        return visible_device(who, device_id)

    @app.get("/tickets")
    def tickets(who: Caller) -> list[Ticket]:
        mine = {d.id for d in store.devices() if sees_device(who, d)}
        return [t for t in store.tickets() if t.device_id in mine]

    @app.get("/tickets/{ticket_id}")
    def ticket(who: Caller, ticket_id: str) -> Ticket:
        return visible_ticket(who, ticket_id)

    @app.get("/tickets/{ticket_id}/sla")
    def ticket_sla(who: Caller, ticket_id: str) -> dict[str, Any]:
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
        actor = f"{who.role}:{who.subject or '-'}"
        return desk.open_ticket(
            store, body.device_id, body.tier, body.title, actor, uuid.uuid4().hex, clock()
        )

    @app.post("/tickets/{ticket_id}/events")
    def ticket_event(who: Caller, ticket_id: str, body: EventRequest) -> Ticket:
        current = visible_ticket(who, ticket_id)
        roles = _EVENT_ROLES.get(body.event)
        if roles is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown event {body.event}"
            )
        if who.role not in roles or (who.role is Role.ENGINEER and current.assignee != who.subject):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who.role} may not {body.event} this")
        try:
            return desk.apply(store, ticket_id, _event(body), f"{who.role}:{who.subject}", clock())
        except TransitionError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    @app.get("/audit/verify")
    def audit_verify(who: Caller) -> dict[str, Any]:
        if who.role is not Role.ADMIN:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
        result = verify(store.audit_log())
        return {"ok": result.ok, "problems": [p.reason for p in result.problems]}

    return app


def app_from_env() -> FastAPI:
    """App for ``uvicorn --factory``: VIGIL_SERVICE_DB and VIGIL_SERVICE_TOKENS (JSON)."""
    store = SqliteStore(os.environ.get("VIGIL_SERVICE_DB", "vigil-service.db"))
    raw = json.loads(os.environ.get("VIGIL_SERVICE_TOKENS", "{}"))
    tokens = {token: Principal.model_validate(p) for token, p in raw.items()}
    return create_app(store, tokens)
