"""Errors that become clean HTTP answers rather than a 500, and the NUL guard at the door."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.errors import InfrastructureUnavailable
from service.api.auth import TokenStoreUnreadable
from service.api.context import NoReadingStore
from service.api.scope import NOT_FOUND
from service.concurrency import ConcurrentUpdate
from service.desk import NotFound

STALE_WRITE = "the ticket was changed by another request meanwhile; re-read it and retry"
ECHO_CHARS = 100  # how much of a refused input value a 422 repeats


async def refuse_nul(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """422 for a NUL anywhere in the URL or body."""
    # PostgreSQL text cannot hold NUL; refuse it at the door rather than fail in the store.
    # The body limit (outside this) has already bounded what is read here.
    body = await request.body()
    if b"\\u0000" in body or b"\x00" in body or "\x00" in str(request.url):
        return JSONResponse({"detail": "NUL characters are not accepted"}, status_code=422)
    return await call_next(request)


def _detail(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


def _clipped(error: dict[str, Any]) -> dict[str, Any]:
    value = error.get("input")
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return {**error, "input": value[:ECHO_CHARS] + "…"}
    return error


async def invalid_request(request: Request, exc: Exception) -> Response:
    """422 naming each invalid field; the input it repeats is clipped and ASCII-escaped.

    The default handler echoes inputs in full and as UTF-8, so a lone surrogate in a refused
    field made the 422 itself fail with a 500.
    """
    assert isinstance(exc, RequestValidationError)
    errors = [_clipped(e) for e in exc.errors()]
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status.HTTP_422_UNPROCESSABLE_CONTENT, media_type="application/json")


async def one_not_found(request: Request, exc: Exception) -> Response:
    """Every 404 has the same body, whatever was missing or out of scope (and unknown routes)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_404_NOT_FOUND:
        return _detail(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return await http_exception_handler(request, exc)


async def vanished(request: Request, exc: Exception) -> Response:
    """404: the object was removed between the scope check and the write."""
    return _detail(status.HTTP_404_NOT_FOUND, NOT_FOUND)


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


async def tokens_unreadable(request: Request, exc: Exception) -> Response:
    """503: the token file cannot be read right now (being rewritten, or damaged)."""
    return _detail(
        status.HTTP_503_SERVICE_UNAVAILABLE, "tokens cannot be checked for now; retry later"
    )


def install(app: FastAPI) -> None:
    """Add the NUL guard and the exception handlers to ``app``."""
    app.middleware("http")(refuse_nul)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, one_not_found)
    app.add_exception_handler(NotFound, vanished)
    app.add_exception_handler(ConcurrentUpdate, concurrent_update)
    app.add_exception_handler(NoReadingStore, no_reading_store)
    app.add_exception_handler(InfrastructureUnavailable, infrastructure_down)
    app.add_exception_handler(TokenStoreUnreadable, tokens_unreadable)
