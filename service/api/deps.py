"""Typed dependencies, declared once: a route states what it uses and who may call it.

``CallerDep`` is any authenticated caller (401 otherwise, 429 over the token's request
budget); ``AdminDep``, ``StaffDep`` and ``OpenerDep`` additionally refuse other roles with 403.
Finer rules (an engineer on their own tickets only, a hospital on its own site) depend on the
object and stay in the route.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.auth import token_key
from service.api.context import ApiContext, Telemetry
from service.api.rate import RateLimits
from service.api.schemas import Principal, Role
from service.api.text import ID_PATTERN
from service.sla import SlaConfig
from service.store import ServiceStore

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


def get_limits(context: ContextDep) -> RateLimits:
    """The app's rate budgets."""
    return context.limits


def get_heavy(context: ContextDep) -> threading.BoundedSemaphore:
    """The guard of the routes that hold many rows at once (reports, boards, audit)."""
    return context.heavy


def get_now(context: ContextDep) -> datetime:
    """The current instant, from the app's clock."""
    return context.clock()


StoreDep = Annotated[ServiceStore, Depends(get_store)]
ReadingsDep = Annotated[Telemetry, Depends(get_telemetry)]
SlaDep = Annotated[SlaConfig, Depends(get_sla)]
NowDep = Annotated[datetime, Depends(get_now)]
LimitsDep = Annotated[RateLimits, Depends(get_limits)]
HeavyDep = Annotated[threading.BoundedSemaphore, Depends(get_heavy)]


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "invalid or missing token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_caller(
    request: Request,
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller the bearer token names; 401 without a known token, 429 over its budget."""
    if credentials is None:
        raise _unauthorized()
    client = request.client.host if request.client else "-"
    # A client that keeps failing is stopped before its next guess costs a KDF run.
    context.limits.may_authenticate(client)
    found = context.authenticate(credentials.credentials)
    if found is None:
        context.limits.failed_authentication(client)
        raise _unauthorized()
    context.limits.request(token_key(credentials.credentials))
    return found


def get_token_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The digest of the caller's token, which their rate budgets are kept under."""
    return token_key(credentials.credentials) if credentials else "-"


CallerDep = Annotated[Principal, Depends(get_caller)]
TokenKeyDep = Annotated[str, Depends(get_token_key)]


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
# docs/service.md: hospitals and patients open tickets (one-click repair); admins may do all.
OpenerDep = Annotated[Principal, Depends(caller_in(Role.ADMIN, Role.HOSPITAL, Role.PATIENT))]
