"""Errors that become clean HTTP answers rather than a 500, and the NUL guard at the door."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import JSONResponse

from infra.errors import InfrastructureUnavailable
from service.api.context import NoReadingStore
from service.concurrency import ConcurrentUpdate

STALE_WRITE = "the ticket was changed by another request meanwhile; re-read it and retry"


async def refuse_nul(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """422 for a NUL anywhere in the URL or body."""
    # PostgreSQL text cannot hold NUL; refuse it at the door rather than fail in the store.
    body = await request.body()
    if b"\\u0000" in body or b"\x00" in body or "\x00" in str(request.url):
        return JSONResponse({"detail": "NUL characters are not accepted"}, status_code=422)
    return await call_next(request)


def _detail(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


async def concurrent_update(request: Request, exc: Exception) -> Response:
    """409: a write lost the race against another writer of the same ticket."""
    reason = str(exc)
    return _detail(status.HTTP_409_CONFLICT, f"{STALE_WRITE} ({reason})" if reason else STALE_WRITE)


async def no_reading_store(request: Request, exc: Exception) -> Response:
    """503: the route needs readings and this API has no reading store."""
    return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, "no reading store configured")


async def infrastructure_down(request: Request, exc: Exception) -> Response:
    """503: a database is out of reach for now; the same request may succeed later."""
    return _detail(
        status.HTTP_503_SERVICE_UNAVAILABLE, "storage is unavailable for now; retry later"
    )


def install(app: FastAPI) -> None:
    """Add the NUL guard and the exception handlers to ``app``."""
    app.middleware("http")(refuse_nul)
    app.add_exception_handler(ConcurrentUpdate, concurrent_update)
    app.add_exception_handler(NoReadingStore, no_reading_store)
    app.add_exception_handler(InfrastructureUnavailable, infrastructure_down)
