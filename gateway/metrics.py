"""The gateway's outbox as Prometheus metrics, read at scrape time.

Events (readings in, batches acked, drops, confirmations, confirm latency, BLE adverts, links
and refusals by reason) are counted where they happen (gateway.counters, gateway.ble.counters).
The outbox's state — how much waits, and for how long — is asked of the outbox itself when
Prometheus scrapes (it is thread-safe; the oldest row is found by its primary key).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from gateway.app import Gateway
from gateway.outbox import Outbox
from infra.metrics import FunctionCollector
from infra.time_us import now_us


def register(registry: CollectorRegistry, gateway: Gateway) -> None:
    """Export ``gateway``'s outbox state (and its bridge's consume loop) into ``registry``."""
    if gateway.bridge is not None:
        gateway.bridge.loop.instrument(registry)
    registry.register(FunctionCollector("gateway outbox", lambda: _outbox(gateway.outbox)))


def _outbox(outbox: Outbox) -> Iterator[Metric]:
    stats = outbox.stats()
    yield GaugeMetricFamily(
        "vigil_gateway_outbox_readings",
        "Readings in the outbox: not yet batched, or batched and not yet confirmed",
        value=stats.pending_readings,
    )
    yield GaugeMetricFamily(
        "vigil_gateway_outbox_open_batches",
        "Batches cut and not yet confirmed by ingest",
        value=stats.open_batches,
    )
    yield GaugeMetricFamily(
        "vigil_gateway_outbox_bound_readings",
        "Readings the outbox holds before it drops the oldest (the byte bound may lower it)",
        value=stats.bound_readings,
    )
    yield CounterMetricFamily(
        "vigil_gateway_outbox_dropped_readings",
        "Oldest readings dropped by the outbox bound, over the outbox's life (durable)",
        value=stats.dropped_readings,
    )
    oldest = outbox.oldest_pending_us()
    age = 0.0 if oldest is None else max(0.0, (now_us() - oldest) / 1e6)
    yield GaugeMetricFamily(
        "vigil_gateway_outbox_oldest_pending_age_seconds",
        "Age of the oldest reading still in the outbox, by its own timestamp (0: empty)",
        value=age,
    )
