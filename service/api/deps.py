"""Typed dependencies, declared once: a route states what it uses and who may call it.

``CallerDep`` is any authenticated caller (401 otherwise); ``AdminDep`` and ``StaffDep``
additionally refuse other roles with 403. Finer rules (an engineer on their own tickets only,
a hospital on its own site) depend on the object and stay in the route.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.context import ApiContext, Telemetry, token_key
from service.api.schemas import Principal, Role
from service.sla import SlaConfig
from service.store import ServiceStore

# Ids in paths: letters, digits and ._:- only, so nothing odd reaches a database or a log line.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
Id = Annotated[str, Path(pattern=ID_PATTERN)]

_bearer = HTTPBearer(auto_error=False)


def get_context(request: Request) -> ApiContext:
    """The shared state of the app serving ``request``."""
    context = request.app.state.context
    assert isinstance(context, ApiContext)
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_store(context: ContextDep) -> ServiceStore:
    """The service store."""
    return context.store


def get_telemetry(context: ContextDep) -> Telemetry:
    """The (optional) reading store."""
    return context.telemetry


def get_sla(context: ContextDep) -> SlaConfig:
    """The SLA policy."""
    return context.sla


def get_now(context: ContextDep) -> datetime:
    """The current instant, from the app's clock."""
    return context.clock()


StoreDep = Annotated[ServiceStore, Depends(get_store)]
ReadingsDep = Annotated[Telemetry, Depends(get_telemetry)]
SlaDep = Annotated[SlaConfig, Depends(get_sla)]
NowDep = Annotated[datetime, Depends(get_now)]


def get_caller(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller the bearer token names; 401 without a known token."""
    found = context.principals.get(token_key(credentials.credentials)) if credentials else None
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or missing token")
    return found


CallerDep = Annotated[Principal, Depends(get_caller)]


def require(who: Principal, *roles: Role) -> None:
    """403 unless ``who`` has one of ``roles``."""
    if who.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{who.role} may not use this")


def caller_in(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if their role is one of ``roles``."""

    def check(who: CallerDep) -> Principal:
        require(who, *roles)
        return who

    return check


AdminDep = Annotated[Principal, Depends(caller_in(Role.ADMIN))]
StaffDep = Annotated[Principal, Depends(caller_in(Role.ADMIN, Role.ENGINEER, Role.HOSPITAL))]
