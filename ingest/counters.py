"""Ingest counters, exported to Prometheus and readable in tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class IngestCounters:
    """One registry per worker, so several workers can share a process (tests, demo)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter("vigil_ingest_messages", "MQTT messages received", registry=r)
        self.batches_new = Counter("vigil_ingest_batches_new", "Batches stored", registry=r)
        self.batches_duplicate = Counter(
            "vigil_ingest_batches_duplicate", "Redelivered batches skipped", registry=r
        )
        self.readings_stored = Counter(
            "vigil_ingest_readings_stored", "Readings written to storage", registry=r
        )
        self.confirmations_sent = Counter(
            "vigil_ingest_confirmations_sent",
            "Confirmation messages published to gateways",
            registry=r,
        )
        self.batches_confirmed = Counter(
            "vigil_ingest_batches_confirmed",
            "Batch_seqs confirmed to gateways as stored",
            registry=r,
        )
        self.dead_letters = Counter(
            "vigil_ingest_dead_letters",
            "Dead letters by kind: payload (undecodable), reading (rejected by the contract),"
            " topic (batch of another gateway), unregistered (device not registered to the"
            " gateway's site), message (refused by storage or failed),"
            " unstorable (could not be stored; logged instead)",
            ["kind"],
            registry=r,
        )
        self.readings_unregistered = Counter(
            "vigil_ingest_readings_unregistered",
            "Readings dead-lettered because the installed base does not register their device"
            " to the reporting gateway's site",
            ["gateway_id"],
            registry=r,
        )
        self.gateway_alerts = Counter(
            "vigil_ingest_gateway_alerts",
            "Gateway-level alerts published (a gateway reporting unregistered devices)",
            registry=r,
        )

        self.storage_outages = Counter(
            "vigil_ingest_storage_outages", "Times storage became unreachable", registry=r
        )
        self.storage_retries = Counter(
            "vigil_ingest_storage_retries",
            "Writes retried after storage was unreachable",
            registry=r,
        )
        self.storage_unavailable = Gauge(
            "vigil_ingest_storage_unavailable",
            "1 while storage is unreachable and ingest holds its messages unacked",
            registry=r,
        )
        self.hook_storage_failures = Counter(
            "vigil_ingest_hook_storage_failures",
            "on_stored hooks that failed on unreachable storage after the readings committed",
            registry=r,
        )
        self.hook_errors = Counter(
            "vigil_ingest_hook_errors",
            "on_stored hooks that raised after the readings committed (logged with traceback)",
            registry=r,
        )

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample, e.g. ``value('vigil_ingest_readings_stored_total')``."""
        return float(self.registry.get_sample_value(name, labels or None) or 0.0)
