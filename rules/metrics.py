"""The rules' Prometheus metrics, read at scrape time from the runtime, worker and lease.

The runtime, worker and replica keep plain counts (``RuntimeCounters``, ``RulesWorker.rejected``
…); this collector turns them into metrics when Prometheus asks, so the engine's hot path pays
nothing. Active alerts come from the alert book, unpublished ones from the store's outbox (its
partial index on unpublished rows), capped at ``UNPUBLISHED_CAP``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from infra.metrics import FunctionCollector

if TYPE_CHECKING:
    from rules.replica import Replica
    from rules.runtime import AlertStore, RuleRuntime
    from rules.worker import RulesWorker

UNPUBLISHED_CAP = 1_000  # counting further says nothing more and costs a longer read


def register(
    registry: CollectorRegistry,
    runtime: RuleRuntime,
    *,
    worker: RulesWorker | None = None,
    replica: Replica | None = None,
    store: AlertStore | None = None,
    holder: str = "in-process",
) -> None:
    """Export ``runtime`` (and the worker, replica and alert outbox given) into ``registry``."""
    if worker is not None:
        worker.loop.instrument(registry)

    def collect() -> Iterator[Metric]:
        yield from _runtime(runtime)
        if worker is not None:
            yield from _worker(worker)
        yield from _lease(runtime, replica, holder)
        if store is not None:
            yield _unpublished(store)

    registry.register(FunctionCollector("rules", collect))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _runtime(runtime: RuleRuntime) -> Iterator[Metric]:
    c = runtime.counters
    yield _counter("vigil_rules_batches", "Batches evaluated by the rule engine", c.batches)
    yield _counter(
        "vigil_rules_readings_evaluated",
        "Readings evaluated by the rule engine (its rate: evaluations per second)",
        c.readings,
    )
    yield _counter("vigil_rules_alert_events", "Alert events raised or cleared", c.events)
    yield _counter(
        "vigil_rules_alerts_published", "Alert events the broker acknowledged", c.published
    )
    yield _counter(
        "vigil_rules_alert_publish_failures", "Alert publishes that failed", c.publish_failures
    )
    yield _counter("vigil_rules_snapshots", "Engine checkpoints written", c.snapshots)
    yield _counter(
        "vigil_rules_caught_up_readings", "Stored readings re-evaluated on takeovers", c.caught_up
    )
    active = GaugeMetricFamily(
        "vigil_rules_active_alerts", "Alerts raised and not cleared, by rule", labels=["rule"]
    )
    for rule, count in sorted(Counter(a.rule_id for a in runtime.book.active()).items()):
        active.add_metric([rule], count)
    yield active


def _worker(worker: RulesWorker) -> Iterator[Metric]:
    yield _counter(
        "vigil_rules_readings_rejected",
        "Invalid readings left out of otherwise valid batches",
        worker.rejected,
    )
    yield _counter(
        "vigil_rules_readings_unregistered",
        "Readings of devices the batch's gateway may not report (installed base)",
        worker.unregistered,
    )


def _lease(runtime: RuleRuntime, replica: Replica | None, holder: str) -> Iterator[Metric]:
    held = GaugeMetricFamily(
        "vigil_rules_lease_held",
        "1 while this process evaluates (holds the rules lease, or runs alone)",
        labels=["holder"],
    )
    held.add_metric([holder], 1.0 if runtime.active else 0.0)
    yield held
    if replica is not None:
        yield _counter(
            "vigil_rules_takeovers", "Times this replica took the lease over", replica.takeovers
        )


def _unpublished(store: AlertStore) -> Metric:
    pending = len(store.unpublished_alert_events(UNPUBLISHED_CAP))
    return GaugeMetricFamily(
        "vigil_rules_unpublished_alerts",
        f"Stored alert events not yet acknowledged by the broker (counted up to {UNPUBLISHED_CAP})",
        value=pending,
    )
