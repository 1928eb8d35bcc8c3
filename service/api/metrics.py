"""The REST API's Prometheus metrics: requests by route and status, their latency, and where
the rate budgets are counted.

A pure ASGI middleware, added outermost (``app.add_middleware(RequestMetrics, registry=…)``
by the composition root) so that requests refused by the host check or the body limit count
too. Requests are labelled by their route's template (``/tickets/{ticket_id}``), never by the
path asked for: a scanner trying ten thousand paths must not make ten thousand series. A
request no route matched is ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.metrics import LATENCY_BUCKETS, FunctionCollector
from service.api.rate import RateLimits

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


def register_rate_metrics(registry: CollectorRegistry, limits: RateLimits) -> None:
    """Whether the budgets are shared by the API processes, and how many checks fell back to
    this process's memory because the shared ones could not be reached (an outage shows)."""

    def collect() -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "vigil_api_rate_budgets_shared",
            "1 when the rate budgets are kept in the database for every API process, else 0",
            value=1.0 if limits.shared else 0.0,
        )
        yield CounterMetricFamily(
            "vigil_api_rate_fallbacks",
            "Rate budget checks counted in this process's memory: the shared store failed",
            value=float(limits.fallbacks),
        )

    registry.register(FunctionCollector("api rate budgets", collect))
