"""The service worker's event metrics move: notification retries and deliveries, escalations and
SLA breaches, scraped from a real endpoint while the worker runs on real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from contract import AlertEvent, AlertTransition, Severity
from infra.metrics import serve
from service import metrics
from service.notifications import NotifyConfig, wall_clock
from service.store import SqliteStore
from service.worker import Endpoint, ServiceWorker, WorkerSettings
from tests.metrics.harness import scrape
from tests.servers import PrivateMosquitto
from tests.service.factories import device, hours, site
from tests.waiting import wait_until_async


class FlakySender:
    """Answers 503 to the first request, 200 to the rest."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.calls += 1
        return 503 if self.calls == 1 else 200


@pytest.mark.services
async def test_notification_escalation_and_breach_counts_are_scraped(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "service.db")
    store.put_site(site())  # escalation finds the site's staff (none: it escalates anyway)
    store.put_device(device("d1"))
    notify = NotifyConfig(
        service_team=(Endpoint(url="http://team.invalid/hook", secret="s"),),
        backoff_s=0.01,
        backoff_cap_s=0.01,
    )
    settings = WorkerSettings(
        host="127.0.0.1",
        port=mosquitto.port,
        client_id="metrics-service",
        tick_s=3600,
        outbox_poll_s=0.02,
        notify=notify,
    )
    worker = ServiceWorker(settings, store, sender=FlakySender())
    registry = CollectorRegistry()
    metrics.register(registry, worker, store)
    server = serve(registry, 0, "127.0.0.1")
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 30)
        now = wall_clock()
        alert = AlertEvent(
            device_id="d1",
            rule_id="scope.leak",
            severity=Severity.CRITICAL,
            transition=AlertTransition.RAISED,
            at_us=int(now.timestamp() * 1e6),
        )
        assert await worker.handle_alert(alert) is not None
        await asyncio.wait_for(worker.drain(), 30)
        # Two days on, nobody has answered: the ticket escalates and both clocks are breached.
        await worker.tick(now + hours(48))

        def moved() -> bool:
            s = scrape(server.port)
            return s.value("vigil_service_escalations_total") >= 1 and (
                s.value("vigil_service_sla_breaches_total") >= 1
            )

        await wait_until_async(moved, 30.0, "escalation and breach counted")
        s = scrape(server.port)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        store.close()
    attempts = "vigil_service_notification_attempts_total"
    assert s.value(attempts, channel="webhook", outcome="retry") == 1
    assert s.value(attempts, channel="webhook", outcome="delivered") >= 1
    assert s.value(attempts, channel="webhook", outcome="failed") == 0
    assert s.total("vigil_service_open_tickets", tier="urgent") == 1  # (and a PM ticket)
    assert s.value("vigil_service_breached_open_tickets", tier="urgent", clock="respond") == 0
    assert s.value("vigil_consume_connected", consumer="service worker") == 1
