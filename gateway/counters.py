"""The gateway's counters, exported to Prometheus and readable in tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class GatewayCounters:
    """One registry per gateway instance, so several gateways can share a process (tests)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.readings_in = Counter(
            "vigil_gateway_readings_in", "Readings accepted into the outbox", ["source"], registry=r
        )
        self.readings_rejected = Counter(
            "vigil_gateway_readings_rejected",
            "Inputs rejected before the outbox",
            ["reason"],
            registry=r,
        )
        self.future_skew = Counter(
            "vigil_gateway_future_skew_rejected",
            "Readings or messages refused for a timestamp ahead of the gateway clock, per device",
            ["device_id"],
            registry=r,
        )
        self.dead_letters_dropped = Counter(
            "vigil_gateway_dead_letters_dropped",
            "Oldest dead letters dropped by the outbox's dead-letter byte bound",
            registry=r,
        )
        self.batches_sent = Counter(
            "vigil_gateway_batches_acked", "Batches the broker acknowledged", registry=r
        )
        self.readings_sent = Counter(
            "vigil_gateway_readings_acked", "Readings in acknowledged batches", registry=r
        )
        self.resent_batches = Counter(
            "vigil_gateway_batches_resent", "Batches sent again after a (re)connect", registry=r
        )
        self.resent_on_timeout = Counter(
            "vigil_gateway_batches_resent_on_timeout",
            "Published batches sent again because ingest's confirmation was late",
            registry=r,
        )
        self.confirmations_received = Counter(
            "vigil_gateway_confirmations",
            "Confirmation messages received from ingest",
            registry=r,
        )
        self.confirmations_rejected = Counter(
            "vigil_gateway_confirmations_rejected",
            "Confirmation messages ignored: malformed, for another gateway, or without our MAC",
            registry=r,
        )
        self.readings_confirmed = Counter(
            "vigil_gateway_readings_confirmed", "Readings ingest confirmed as stored", registry=r
        )
        self.uplink_reconnects = Counter(
            "vigil_gateway_uplink_reconnects", "Uplink connection attempts after a loss", registry=r
        )
        self.dropped_readings = Counter(
            "vigil_gateway_outbox_dropped",
            "Oldest readings dropped by the outbox bound",
            registry=r,
        )
        self.outbox_pending = Gauge(
            "vigil_gateway_outbox_pending", "Readings waiting in the outbox", registry=r
        )
        self.confirm_seconds = Histogram(
            "vigil_gateway_confirm_latency_seconds",
            "From the broker's PUBACK of a batch to ingest's confirmation that it stored it",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )

    def value(self, name: str, **labels: str) -> float:
        """Current value of a metric sample, e.g. ``value('vigil_gateway_batches_acked_total')``."""
        result = self.registry.get_sample_value(name, labels or None)
        return float(result or 0.0)
