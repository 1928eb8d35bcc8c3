"""Rendering a page: the Jinja2 environment, and what every template may use.

Templates get ``_`` (gettext with ``%(name)s`` variables), ``ngettext``, ``when`` (a date in the
site's zone and the reader's language), ``vendor`` (a vendored asset's URL and SRI hash), the
caller, the navigation for their role and the CSRF token. Autoescaping is on everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from infra.time_us import datetime_from_us
from service.console import i18n
from service.console.assets import PREFIX, vendor_sri, vendor_url
from service.console.nav import for_role
from service.console.session import Session
from service.console.state import console_of

TEMPLATES = Path(__file__).parent / "templates"


class Asset(NamedTuple):
    """A vendored file as a template links it."""

    url: str
    integrity: str


@cache
def environment() -> Environment:
    """The one template environment (templates are compiled once per process)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    env.globals.update(
        _=i18n.gettext,
        vendor=lambda name: Asset(vendor_url(name), vendor_sri(name)),
        static=lambda name: f"{PREFIX}/{name}",
        languages=i18n.LANGUAGES,
    )
    env.filters["us_datetime"] = datetime_from_us
    return env


def language_of(request: Request) -> str:
    """The language ``request`` is answered in."""
    return i18n.chosen(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))


def render_text(
    request: Request,
    template: str,
    values: Mapping[str, Any],
    session: Session | None = None,
    zone: tzinfo = UTC,
) -> str:
    """``template`` rendered for ``request`` (and its session) with ``values``."""
    i18n.use(language_of(request))
    nav = for_role(console_of(request).nav, session.who.role) if session else []

    def when(at: datetime | None, style: str = "medium") -> str:
        return i18n.when(at, zone, style)

    context = {
        "request": request,
        "session": session,
        "who": session.who if session else None,
        "csrf_token": session.csrf if session else "",
        "nav": nav,
        "path": request.url.path,
        "lang": i18n.current(),
        "lang_tag": i18n.tag(),
        "when": when,
        "zone": str(zone),
        **values,
    }
    return environment().get_template(template).render(context)


def page(
    request: Request,
    template: str,
    values: Mapping[str, Any],
    session: Session | None = None,
    *,
    zone: tzinfo = UTC,
    status_code: int = 200,
) -> HTMLResponse:
    """``template`` as an HTML response."""
    html = render_text(request, template, values, session, zone)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def is_fragment(request: Request) -> bool:
    """Whether the request asks for a page's live-swapped part (its ``…/rows`` route)."""
    return request.url.path.endswith("/rows")


# Everything is served from here (vendored assets, no CDN): the policy can be this strict.
# 'unsafe-eval' is left out: htmx is configured not to evaluate (see base.html).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
