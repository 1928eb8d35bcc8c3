"""CSRF protection: every unsafe request carries the session's token, in a form field or header.

Forms post it as the hidden ``csrf`` field; htmx sends it as the ``X-CSRF-Token`` header (the
base layout sets ``hx-headers`` on <body>). The login form, posted before any session exists,
uses a double-submit cookie instead. The session cookie is also SameSite=Strict, so a
cross-site form never carries it; the token is the defence for browsers that ignore that.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status

FIELD = "csrf"
HEADER = "X-CSRF-Token"
LOGIN_COOKIE = "vigil_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; False when either is missing."""
    if not expected or not given:
        return False
    return secrets.compare_digest(expected.encode(), given.encode())


async def presented(request: Request) -> str | None:
    """The token a request presents: the header, else the form field."""
    header = request.headers.get(HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(FIELD)
        return value if isinstance(value, str) else None
    return None


async def check(request: Request, expected: str | None) -> None:
    """403 unless an unsafe request presents ``expected``."""
    if request.method in SAFE_METHODS:
        return
    if not same(expected, await presented(request)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


def new_token() -> str:
    """A fresh random token."""
    return secrets.token_urlsafe(32)
