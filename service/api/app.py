"""The FastAPI app: built from explicit settings, or from ready stores (tests, doubles)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from infra.telemetry import open_store
from infra.telemetry.base import ReadingStore
from service.api import errors
from service.api.context import ApiContext, Telemetry, token_key
from service.api.routes import ROUTERS
from service.api.schemas import Principal
from service.api.settings import ApiSettings, load_tokens
from service.sla import SlaConfig
from service.store import ServiceStore, open_service_store


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_app(
    store: ServiceStore,
    tokens: Mapping[str, Principal],
    *,
    readings: ReadingStore | None = None,
    sla: SlaConfig | None = None,
    clock: Callable[[], datetime] = _utc_now,
    owned: AbstractContextManager[object] | None = None,
) -> FastAPI:
    """The API over ``store`` (and ``readings``, for telemetry); tokens map to principals.

    ``owned`` is closed when the app shuts down: the stores the app opened itself.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with owned or ExitStack():
            yield

    app = FastAPI(title="vigil service", version="0.2.0", lifespan=lifespan)
    app.state.context = ApiContext(
        store=store,
        principals={token_key(t): p for t, p in tokens.items()},
        sla=sla or SlaConfig(),
        clock=clock,
        telemetry=Telemetry(readings),
    )
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


def create_app(
    settings: ApiSettings, *, sla: SlaConfig | None = None, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """The API as ``settings`` describe it; raises TokensUnavailable before opening any store."""
    tokens = load_tokens(settings.tokens_file)
    with ExitStack() as opened:
        store = open_service_store(settings.store_url)
        opened.callback(store.close)
        readings: ReadingStore | None = None
        if settings.readings_url is not None:
            readings = open_store(settings.readings_url)
            opened.callback(readings.close)
            readings.migrate()
        # From here on the app owns the stores and closes them when it shuts down.
        owned = opened.pop_all()
    return build_app(store, tokens, readings=readings, sla=sla, clock=clock, owned=owned)
