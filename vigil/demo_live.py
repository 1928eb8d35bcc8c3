"""The live half of `vigil demo --serve`: after the scenario, the data path keeps running.

The embedded broker stays up on the demo's port with a gateway bridging the demo site's
equipment topics, ingest, the rules and the ticket worker — now on the wall clock — so a
vendor's `mosquitto_pub` (docs/integration.md) travels the same path as the scenario did and
shows in the console beside it. Silence rules are off: the simulated devices stopped when the
scenario ended, and would all look silent half an hour later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from infra.telemetry import open_store
from ingest.worker import IngestSettings, IngestWorker
from rules.runtime import RuleRuntime, RuntimeSettings
from service.store import SqliteStore
from service.worker import ServiceWorker, WorkerSettings
from vigil.demo import demo_rules
from vigil.embedded_broker import EmbeddedBroker


@dataclass(frozen=True, slots=True)
class LiveSite:
    """Where the live data path listens: the demo's broker and the site its gateway bridges."""

    broker_port: int
    site: str
    gateway_id: str = "demo-gw"


@contextlib.asynccontextmanager
async def live_data_path(workdir: Path, live: LiveSite) -> AsyncIterator[None]:
    """Run broker, gateway, ingest, rules and the ticket worker over the demo's files."""
    store = open_store(f"sqlite:///{workdir / 'vigil.db'}")
    store.migrate()
    service = SqliteStore(workdir / "service.db")
    rules = [rule for rule in demo_rules() if rule.kind != "silence"]
    try:
        async with (
            EmbeddedBroker(live.broker_port) as broker,
            contextlib.AsyncExitStack() as stack,
        ):
            client = await stack.enter_async_context(
                aiomqtt.Client(broker.host, broker.port, identifier="demo-live-rules")
            )
            runtime = await stack.enter_async_context(
                RuleRuntime(rules, None, store, client, RuntimeSettings())
            )
            host, port = broker.host, broker.port
            worker = ServiceWorker(
                WorkerSettings(host=host, port=port, client_id="demo-live-service", mqtt_v5=False),
                service,
            )
            ingest = IngestWorker(
                IngestSettings(host=host, port=port, client_id="demo-live-ingest", mqtt_v5=False),
                store,
                on_stored=runtime.on_stored,
            )
            for work in (worker.run(), ingest.run()):
                stack.push_async_callback(_cancel, asyncio.create_task(work))
            await asyncio.wait_for(
                asyncio.gather(ingest.subscribed.wait(), worker.subscribed.wait()), 30
            )
            gateway = Gateway(
                GatewaySettings(
                    gateway_id=live.gateway_id,
                    outbox_path=workdir / "outbox.db",
                    uplink=UplinkSettings(host=host, port=port),
                    site_broker=SiteBrokerSettings(host=host, port=port, site=live.site),
                )
            )
            await stack.enter_async_context(gateway)
            # Serve only once the bridge listens: a vendor's first mosquitto_pub (QoS 1 to a
            # session the broker does not yet know) would otherwise be lost on a busy machine.
            assert gateway.bridge is not None
            await asyncio.wait_for(gateway.bridge.subscribed.wait(), 30)
            yield
    finally:
        service.close()
        store.close()


async def _cancel(task: asyncio.Task[None]) -> None:
    """Stop a worker and wait until it is gone."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


__all__ = ["LiveSite", "live_data_path"]
