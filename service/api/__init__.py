"""REST API over the service desk: bearer tokens, four roles, each seeing only what it may.

admin sees everything; an engineer sees everything and moves the tickets assigned to them;
hospital staff see only their site's devices and tickets; a patient sees only their own kit,
in a view without staff fields. 401: no or unknown token. 403: the caller's role may never
use the route or send the event. 404 (one body for all): the object does not exist *or* lies
outside the caller's scope. 409: the event is not allowed in the ticket's state, or another
writer changed it meanwhile. 413: body over the limit (checked before anything else). 429:
over a rate budget. Every write goes through ``desk`` and lands in the hash-chained audit log.

Layout (after FastAPI's full-stack template): ``routes/`` one router per resource, ``deps``
the typed dependencies, ``schemas`` the bodies, ``app`` the factory. Settings come in
explicitly (``ApiSettings``); the composition root ``vigil.api_app`` builds them.
"""

from service.api.app import build_app, create_app
from service.api.schemas import Principal, Role
from service.api.settings import ApiGuards, ApiSettings, TokensUnavailable, open_registry

__all__ = [
    "ApiGuards",
    "ApiSettings",
    "Principal",
    "Role",
    "TokensUnavailable",
    "build_app",
    "create_app",
    "open_registry",
]
