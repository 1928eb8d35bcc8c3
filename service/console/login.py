"""Login with an API bearer token, logout, the language switch, and the console's front door."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from service.api.auth import token_key
from service.api.deps import ContextDep
from service.console import csrf, i18n
from service.console.deps import ConsoleDep, SessionDep
from service.console.nav import home
from service.console.render import page
from service.console.session import COOKIE

router = APIRouter(prefix="/console")
# Cache Storage and service workers are "storage"; cookies are kept (set in the same response).
CLEAR_SITE_DATA = '"cache", "storage"'

LOGIN = "/console/login"
MAX_TOKEN_FIELD = 512


def secure(request: Request) -> bool:
    """Whether cookies get the Secure flag: when the browser reached us over TLS."""
    return request.url.scheme == "https"


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
def front_door(request: Request, console: ConsoleDep) -> Response:
    """The caller's home screen when logged in, the login page otherwise."""
    session = console.sessions.get(request.cookies.get(COOKIE))
    target = home(console.nav, session.who.role) if session else LOGIN
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get("/login", include_in_schema=False)
def login_form(request: Request) -> Response:
    """The login form, with a fresh double-submit CSRF token."""
    return _login_page(request)


def _login_page(request: Request, error: str = "", status_code: int = 200) -> Response:
    token = csrf.new_token()
    response = page(
        request, "login.html", {"login_csrf": token, "error": error}, status_code=status_code
    )
    response.set_cookie(
        csrf.LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path=LOGIN,
    )
    return response


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    context: ContextDep,
    console: ConsoleDep,
    token: Annotated[str, Form(max_length=MAX_TOKEN_FIELD)],
    csrf_field: Annotated[str, Form(alias=csrf.FIELD, max_length=128)] = "",
) -> Response:
    """Check the token once; on success a session cookie and the role's home screen."""
    if not csrf.same(request.cookies.get(csrf.LOGIN_COOKIE), csrf_field):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    client = request.client.host if request.client else "-"
    context.limits.may_authenticate(client)
    token = token.strip()
    who = context.authenticate(token)
    if who is None:
        context.limits.failed_authentication(client)
        return _login_page(request, i18n.N_("That token is not valid."), 401)
    session = console.sessions.start(who, token_key(token))
    response = RedirectResponse(home(console.nav, who.role), status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(console.sessions.lifetime_s),
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/console",
    )
    response.delete_cookie(csrf.LOGIN_COOKIE, path=LOGIN)
    # Whatever an earlier user's session left on this browser (the engineer pages' offline
    # copies) goes before the new session's first page.
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


@router.post("/logout", include_in_schema=False)
def logout(console: ConsoleDep, session: SessionDep) -> Response:
    """End the session (CSRF-checked like every form) and return to the login page."""
    console.sessions.end(session.id)
    response = RedirectResponse(LOGIN, status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/console")
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA  # offline copies and their worker
    return response


@router.get("/lang/{language}", include_in_schema=False)
def switch_language(request: Request, language: str, back: str = "/console/") -> Response:
    """Remember the reader's language (a cookie) and go back to the page they were on."""
    if language not in i18n.LANGUAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    # Only back into the console: never an open redirect.
    if not back.startswith("/console/") or back.startswith("//") or "\\" in back:
        back = "/console/"
    response = RedirectResponse(back, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        i18n.COOKIE,
        language,
        max_age=365 * 86400,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/console",
    )
    return response
