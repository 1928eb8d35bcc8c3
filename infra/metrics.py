"""Prometheus metrics: one registry per process, served over HTTP, and the consume loop's metrics.

The composition root (``vigil …``) makes one ``CollectorRegistry`` per process and hands it to
every part that counts; nothing uses prometheus_client's global default registry, so several
workers can share a test process. Names follow the Prometheus conventions: ``vigil_<stage>_…``,
counters end in ``_total``, units are spelt out (``_seconds``, ``_bytes``). docs/operations.md
lists them.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Latency buckets for work measured in milliseconds to seconds (a write, a round trip).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class MetricsServer:
    """A running metrics endpoint: ``http://host:port/metrics``; ``close()`` stops it."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve(registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> MetricsServer:
    """Serve ``registry`` at ``/metrics`` on ``host:port`` (port 0: a free one) in a thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(host, bound, server, thread)


class FunctionCollector(Collector):
    """A collector whose samples a function computes at scrape time (state, not events).

    A failing function (a database outage) is logged and its metrics are left out of that
    scrape rather than failing the whole scrape.
    """

    def __init__(self, name: str, collect: Callable[[], Iterable[Metric]]) -> None:
        self.name = name
        self._collect = collect

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not run the function (it may query a database)."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The metrics as they are now."""
        try:
            return list(self._collect())
        except Exception as exc:
            log.warning("metrics of %s not collected this scrape: %s", self.name, exc)
            return []


class ConsumeMetrics:
    """What every ``infra.consume.ConsumeLoop`` of a process did, labelled by consumer name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        self.messages = Counter(
            "vigil_consume_messages",
            "Messages settled by a consume loop: committed, or dead-lettered",
            ["consumer", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "vigil_consume_dead_letters",
            "Messages dead-lettered by a consume loop, by the error class that refused them",
            ["consumer", "reason"],
            registry=r,
        )
        self.handle_seconds = Histogram(
            "vigil_consume_handle_seconds",
            "Time to commit one group of messages (one transaction), retries excluded",
            ["consumer"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.outages = Counter(
            "vigil_consume_outages",
            "Infrastructure outages (storage, broker) during which a group was held",
            ["consumer"],
            registry=r,
        )
        self.retries = Counter(
            "vigil_consume_retries",
            "Attempts of a held group that failed on unavailable infrastructure",
            ["consumer"],
            registry=r,
        )
        self.holding = Gauge(
            "vigil_consume_holding",
            "1 while the loop holds a group unacknowledged through an outage",
            ["consumer"],
            registry=r,
        )
        self.connected = Gauge(
            "vigil_consume_connected",
            "1 while the loop is connected and subscribed",
            ["consumer"],
            registry=r,
        )
        self.disconnects = Counter(
            "vigil_consume_broker_disconnects",
            "Broker connections lost or refused (the loop reconnects)",
            ["consumer"],
            registry=r,
        )


_CONSUME: weakref.WeakKeyDictionary[CollectorRegistry, ConsumeMetrics] = weakref.WeakKeyDictionary()
_CONSUME_LOCK = threading.Lock()


def consume_metrics(registry: CollectorRegistry) -> ConsumeMetrics:
    """The consume metrics of ``registry``, made once: every loop of a process shares them."""
    with _CONSUME_LOCK:
        metrics = _CONSUME.get(registry)
        if metrics is None:
            metrics = _CONSUME[registry] = ConsumeMetrics(registry)
        return metrics
