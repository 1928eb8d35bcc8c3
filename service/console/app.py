"""The console's assembly: its routers, static files, error pages and shared state on the API app.

Screens are modules exposing ``router`` and ``NAV``; ``SCREENS`` names them. A screen module
not (yet) present is skipped, so screens can be added one at a time.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from types import ModuleType

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api import errors
from service.api.context import ApiContext
from service.console.acks import AckBook
from service.console.assets import PREFIX, STATIC_DIR
from service.console.deps import LoginRequired
from service.console.live import LiveHub
from service.console.nav import NavItem
from service.console.render import page
from service.console.session import COOKIE, Sessions, SessionStore
from service.console.state import ConsoleState
from service.console.watch import StoreWatcher

# Screen modules in navigation order (each has ``router`` and ``NAV``).
SCREENS = (
    "service.console.login",
    "service.console.ward",
    "service.console.patient",
    "service.console.live_routes",
    "service.console.engineer",
    "service.console.dispatch",
    "service.console.device_file",
    "service.console.desk_pages",
)


def _screens() -> Iterator[ModuleType]:
    for name in SCREENS:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a screen that is there but broken must fail loudly
                raise


def install(app: FastAPI, sessions: Sessions | None = None) -> ConsoleState:
    """Add the console to the API ``app`` (whose ``state.context`` is already set); sessions in
    this process's memory unless ``sessions`` says where."""
    context = app.state.context
    assert isinstance(context, ApiContext)
    nav: list[NavItem] = []
    screens = list(_screens())
    for module in screens:
        nav += getattr(module, "NAV", ())
    state = ConsoleState(
        sessions=SessionStore() if sessions is None else sessions,  # (an empty one is falsy)
        nav=tuple(nav),
        hub=LiveHub(StoreWatcher(context.store, context.telemetry, context.clock)),
        acks=AckBook(context.store),
    )
    app.state.console = state
    for module in screens:
        # Pages are not part of the API's contract: kept out of its OpenAPI schema.
        app.include_router(module.router, include_in_schema=False)
    app.mount(PREFIX, StaticFiles(directory=STATIC_DIR), name="console-static")
    _install_errors(app)
    return state


def _install_errors(app: FastAPI) -> None:
    """Console pages answer errors as pages; everything else keeps the API's JSON answers."""
    api_handler = app.exception_handlers[StarletteHTTPException]

    async def login_required(request: Request, exc: Exception) -> Response:
        if request.headers.get("HX-Request"):
            # htmx follows this header with a full page load.
            return Response(status_code=401, headers={"HX-Redirect": "/console/login"})
        response = RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(COOKIE, path="/console")
        return response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _console_page(request.url.path):
            answer = api_handler(request, exc)
            if inspect.isawaitable(answer):
                answer = await answer
            assert isinstance(answer, Response)
            return answer
        response = page(
            request,
            "error.html",
            {"code": exc.status_code, "detail": str(exc.detail)},
            status_code=exc.status_code,
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    async def invalid_input(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not _console_page(request.url.path):
            return await errors.invalid_request(request, exc)
        # Which fields were refused, never their (hostile) values.
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()})
        detail = "invalid input: " + ", ".join(f or "request" for f in fields)
        return page(request, "error.html", {"code": 422, "detail": detail}, status_code=422)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_input)


def _console_page(path: str) -> bool:
    return path.startswith("/console") and not path.startswith(f"{PREFIX}/")
