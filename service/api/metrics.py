"""The REST API's Prometheus metrics: requests by route and status, and their latency.

A pure ASGI middleware, added outermost (``app.add_middleware(RequestMetrics, registry=…)``
by the composition root) so that requests refused by the host check or the body limit count
too. Requests are labelled by their route's template (``/tickets/{ticket_id}``), never by the
path asked for: a scanner trying ten thousand paths must not make ten thousand series. A
request no route matched is ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import LATENCY_BUCKETS

UNMATCHED = "unmatched"


class RequestMetrics:
    """Counts and times every HTTP request of the app it wraps."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "vigil_api_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "vigil_api_request_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "vigil_api_requests_in_progress", "HTTP requests being answered", registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before answering
        began = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.in_progress.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.in_progress.dec()
            route, method = _route(scope), str(scope.get("method", ""))
            self.seconds.labels(method, route).observe(time.perf_counter() - began)
            self.requests.labels(method, route, str(status)).inc()


def _route(scope: Scope) -> str:
    """The template of the route that answered, set on the scope by the router."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED
