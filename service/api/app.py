"""The FastAPI app: built from explicit settings, or from ready stores (tests, doubles)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from limits.storage import Storage
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from infra.telemetry import open_store
from infra.telemetry.base import ReadingStore
from infra.urls import parse_store_url
from service.api import errors
from service.api.auth import Authenticate, digest_authenticator, registry_authenticator
from service.api.body_limit import BodyLimit
from service.api.context import ApiContext, Telemetry
from service.api.rate import RateLimits
from service.api.rate_storage import DatabaseRateStorage
from service.api.routes import ROUTERS
from service.api.schemas import Principal
from service.api.settings import ApiGuards, ApiSettings, open_registry
from service.checkpoint import load_key, row_signature
from service.console.session import Sessions
from service.console.stored_sessions import StoredSessions
from service.sla import SlaConfig
from service.store import ServiceStore, open_service_store

GZIP_MIN_BYTES = 1024
# zlib's default level: a 3.9 MB ward board compresses in a third of level 9's time (Starlette's
# default), to a body 5% larger.
GZIP_LEVEL = 6
READING_STORES = 4  # reading store connections the API serves requests from, side by side


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_app(
    store: ServiceStore,
    tokens: Mapping[str, Principal] | None = None,
    *,
    authenticate: Authenticate | None = None,
    guards: ApiGuards | None = None,
    readings: ReadingStore | Sequence[ReadingStore] | None = None,
    sla: SlaConfig | None = None,
    clock: Callable[[], datetime] = _utc_now,
    owned: AbstractContextManager[object] | None = None,
    console: bool = True,
    sessions: Sessions | None = None,
    rate_storage: Storage | None = None,
) -> FastAPI:
    """The API over ``store`` (and ``readings``, for telemetry), with the web console.

    Callers are known by ``authenticate`` (the token registry) or, for tests and doubles, by
    ``tokens`` (token → principal; each at least 32 characters). ``guards`` are the limits
    (defaults: ``ApiGuards()``). ``owned`` is closed when the app shuts down: the stores the
    app opened itself. ``sessions``: where the console keeps its sessions (default: this
    process's memory).
    """
    if authenticate is None:
        authenticate = digest_authenticator(tokens or {})
    guards = guards or ApiGuards()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with owned or ExitStack():
            yield

    app = FastAPI(title="vigil service", version="0.2.0", lifespan=lifespan)
    app.state.context = ApiContext(
        store=store,
        authenticate=authenticate,
        limits=RateLimits(
            guards.rate_limit,
            guards.ticket_rate_limit,
            guards.auth_failure_limit,
            shared=rate_storage,
        ),
        sla=sla or SlaConfig(),
        clock=clock,
        telemetry=Telemetry(readings),
    )
    errors.install(app)
    # Lists and boards are JSON that compresses 5-10×; small answers are sent as they are.
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    # Added last, so outermost: the Host check, then the body limit, run before anything else.
    # No www-redirect: no response ever names a host the client made up.
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=guards.allowed_hosts, www_redirect=False
    )
    app.add_middleware(BodyLimit, max_bytes=guards.max_body_bytes, per_prefix=guards.body_limits)
    for router in ROUTERS:
        app.include_router(router)
    if console:
        # Imported here: the console's templates and catalogs load only when it is served.
        from service.console.app import install

        install(app, sessions)
    return app


def create_app(
    settings: ApiSettings, *, sla: SlaConfig | None = None, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """The API as ``settings`` describe it; raises TokensUnavailable before opening any store."""
    registry = open_registry(settings.tokens_file)
    sla = sla or SlaConfig()
    with ExitStack() as opened:
        # Ticket clock columns are written with the same SLA policy the worker uses.
        store = open_service_store(settings.store_url, sla=sla)
        opened.callback(store.close)
        if settings.audit_key_file is not None:
            key = load_key(settings.audit_key_file)
            store.audit_signer = lambda entry: row_signature(key, entry)
        readings: list[ReadingStore] = []
        if settings.readings_url is not None:
            for _ in range(READING_STORES):
                readings.append(open_store(settings.readings_url))
                opened.callback(readings[-1].close)
            readings[0].migrate()
        # In the service database: every API worker process knows every console session.
        sessions = StoredSessions(settings.store_url)
        opened.callback(sessions.close)
        # PostgreSQL may serve several API processes: they spend one set of rate budgets.
        # (SQLite serves one API process, whose memory is enough.)
        rate_storage = None
        if parse_store_url(settings.store_url)[0] == "postgresql":
            rate_storage = DatabaseRateStorage(settings.store_url)
            opened.callback(rate_storage.close)
        # From here on the app owns the stores and closes them when it shuts down.
        owned = opened.pop_all()
    return build_app(
        store,
        authenticate=registry_authenticator(registry),
        guards=settings,
        readings=readings,
        # Tickets' SLA clocks count in their device's site calendar.
        sla=sla.located(store),
        clock=clock,
        owned=owned,
        sessions=sessions,
        rate_storage=rate_storage,
    )
