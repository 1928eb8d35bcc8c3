"""The live feed as Server-Sent Events: ``/console/live``, one stream per open page.

Each stream hears the process's one ``LiveHub`` and passes on only the changes in its caller's
scope (admins and engineers all, a hospital its site's, a patient their own devices'). An event
names only what changed (``alert``, ``ticket``, ``ack``); the page then asks its scoped route
for fresh rows, so the stream itself carries no data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from service.api.schemas import Principal, Role
from service.api.scope import sees_everything
from service.console.deps import ConsoleDep, SessionDep
from service.console.live import Change, LiveHub
from service.console.nav import NavItem

router = APIRouter(prefix="/console")
NAV: tuple[NavItem, ...] = ()

KEEPALIVE_S = 15.0  # a comment line this often, so proxies keep the stream and dead peers show


def concerns(who: Principal, change: Change) -> bool:
    """Whether ``change`` lies in ``who``'s scope (the rule of ``service.api.scope``)."""
    if sees_everything(who):
        return True
    if not who.subject:
        return False
    if who.role is Role.HOSPITAL:
        return who.subject in change.sites
    return who.subject in change.patients


async def stream(hub: LiveHub, who: Principal) -> AsyncIterator[str]:
    """The SSE lines for ``who``: a retry hint, then one event per change in scope."""
    yield "retry: 2000\n\n"
    async with hub.subscribe() as queue:
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if concerns(who, change):
                yield f"event: {change.kind}\ndata: {change.kind}\n\n"


@router.get("/live", include_in_schema=False)
async def live(session: SessionDep, console: ConsoleDep) -> StreamingResponse:
    """The caller's live feed (text/event-stream)."""
    return StreamingResponse(
        stream(console.hub, session.who),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
