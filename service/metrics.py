"""The service worker's Prometheus metrics, computed when Prometheus scrapes.

Events (alerts taken, tickets opened, escalations, breaches reported, notification attempts)
are the worker's own counts; states (open tickets by tier and state, breached clocks) are one
grouped SQL aggregate over the open tickets (``SqlQueries.open_tickets``, through the state
index), never a load of the tickets. A store that cannot answer (an outage) leaves those
metrics out of that scrape; the worker's counts are still served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from infra.metrics import FunctionCollector
from service.notifications import wall_clock
from service.store import ServiceStore
from service.store.sql_store import SqlQueries
from service.worker import ServiceWorker

log = logging.getLogger(__name__)


def register(
    registry: CollectorRegistry,
    worker: ServiceWorker,
    store: ServiceStore,
    clock: Callable[[], datetime] = wall_clock,
) -> None:
    """Export ``worker``'s counts and ``store``'s open tickets into ``registry``."""
    worker.alerts.loop.instrument(registry)
    registry.register(FunctionCollector("service worker", lambda: _worker(worker)))
    registry.register(FunctionCollector("service tickets", lambda: ticket_metrics(store, clock())))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _worker(worker: ServiceWorker) -> Iterator[Metric]:
    yield _counter(
        "vigil_service_alerts",
        "Alerts settled from the broker (committed or dead-lettered)",
        worker.alerts_received,
    )
    yield _counter("vigil_service_alerts_rejected", "Alerts dead-lettered", worker.alerts_rejected)
    yield _counter(
        "vigil_service_tickets_opened", "Tickets opened by alerts", worker.tickets_opened
    )
    yield _counter("vigil_service_escalations", "Tickets escalated", worker.ticker.escalations)
    yield _counter(
        "vigil_service_sla_breaches",
        "SLA breaches reported (one per clock that ran out)",
        worker.ticker.breaches,
    )
    attempts = CounterMetricFamily(
        "vigil_service_notification_attempts",
        "Notification delivery attempts by channel and outcome: delivered, retry (failed, to be"
        " tried again), failed (given up after the last attempt)",
        labels=["channel", "outcome"],
    )
    counted = dict(worker.notifier.attempts)  # a copy: the sender adds to it meanwhile
    for channel in ("webhook", "mqtt"):
        for outcome in ("delivered", "retry", "failed"):
            attempts.add_metric([channel, outcome], counted.get((channel, outcome), 0))
    yield attempts


def ticket_metrics(store: ServiceStore, now: datetime) -> Iterator[Metric]:
    """Open tickets by tier and state, and the open ones in breach, at ``now`` (one query)."""
    if not isinstance(store, SqlQueries):
        return
    rows = store.open_tickets(now)
    open_ = GaugeMetricFamily(
        "vigil_service_open_tickets", "Open tickets by tier and state", labels=["tier", "state"]
    )
    breached = GaugeMetricFamily(
        "vigil_service_breached_open_tickets",
        "Open tickets whose SLA clock (respond, resolve) has run out, by tier",
        labels=["tier", "clock"],
    )
    by_tier: dict[tuple[str, str], int] = {}
    for row in rows:
        open_.add_metric([row.tier, row.state], row.count)
        for clock, count in (("respond", row.respond_breached), ("resolve", row.resolve_breached)):
            by_tier[(row.tier, clock)] = by_tier.get((row.tier, clock), 0) + count
    for (tier, clock), count in sorted(by_tier.items()):
        breached.add_metric([tier, clock], count)
    yield open_
    yield breached
