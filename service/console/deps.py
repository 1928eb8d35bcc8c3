"""Typed dependencies of the console's routes: the session's caller, role checks, CSRF.

``SessionDep`` is a logged-in browser (else a redirect to the login page), whose request is
counted against its token's API budget and, when unsafe, must carry the CSRF token. Scoping
is the API's own (``service.api.scope``): the console has no access rules of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.api.deps import ContextDep
from service.api.schemas import Principal, Role
from service.console import csrf
from service.console.session import COOKIE, Session
from service.console.state import ConsoleState, console_of

ConsoleDep = Annotated[ConsoleState, Depends(console_of)]


class LoginRequired(Exception):
    """No live session: pages redirect to the login page, htmx requests are told to."""


async def get_session(request: Request, console: ConsoleDep, context: ContextDep) -> Session:
    """The request's live session; LoginRequired without one, 403 without its CSRF token."""
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired()
    context.limits.request(session.token_key)
    await csrf.check(request, session.csrf)
    return session


SessionDep = Annotated[Session, Depends(get_session)]


def session_in(*roles: Role) -> Callable[[Session], Awaitable[Session]]:
    """A dependency: the session, if its caller has one of ``roles`` (403 otherwise)."""

    async def check(session: SessionDep) -> Session:
        if session.who.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{session.who.role} may not use this")
        return session

    return check


StaffSession = Annotated[Session, Depends(session_in(Role.ADMIN, Role.ENGINEER, Role.HOSPITAL))]
PatientSession = Annotated[Session, Depends(session_in(Role.PATIENT, Role.ADMIN))]


def who(session: Session) -> Principal:
    """The session's caller."""
    return session.who
