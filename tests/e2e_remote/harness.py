"""One site for the remote-diagnosis tests: service store + API, consumers, gateway channel.

Everything talks to one private Mosquitto (site and uplink topics do not overlap); the gateway's
remote channel can be stopped and started again to play an offline gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from contract import DeviceKind
from gateway.command_journal import CommandJournal
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.outbox import Outbox
from gateway.remote import RemoteAgent, RemoteSettings
from gateway.uplink import UplinkSettings
from infra.tasks import stop_all
from service import desk
from service.api import create_app
from service.api.settings import ApiSettings
from service.commands_relay import CommandRelay
from service.model import Tier
from service.presence_consumer import PresenceConsumer
from service.store import SqliteStore
from service.worker_settings import WorkerSettings
from tests.service.factories import device, engineer, site
from tests.service.live import mint_tokens

SITE = "site-a"
GATEWAY = "gw-remote"
TOKENS = {
    "eng1": {"role": "engineer", "subject": "e1"},
    "eng2": {"role": "engineer", "subject": "e2"},
    "adm": {"role": "admin"},
}


@dataclass
class Site:
    """The service side and the gateway of one test."""

    port: int
    tmp: Path
    store: SqliteStore
    api: TestClient
    tokens: dict[str, str]
    presence: PresenceConsumer
    relay: CommandRelay
    outbox: Outbox
    agent: RemoteAgent | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _agent_task: asyncio.Task[None] | None = None

    def headers(self, name: str) -> dict[str, str]:
        """The Authorization header of the token minted for ``name``."""
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def start_gateway(self) -> RemoteAgent:
        """Start (again) the gateway's remote channel."""
        self.agent = RemoteAgent(
            GATEWAY,
            self.outbox,
            UplinkSettings(host="127.0.0.1", port=self.port),
            SiteBrokerSettings(host="127.0.0.1", port=self.port, site=SITE),
            RemoteSettings(reconnect_backoff_s=0.2, timeout_tick_s=0.05),
            CommandJournal(self.tmp / "outbox.db", GATEWAY),  # as the gateway app gives it
        )
        self._agent_task = asyncio.create_task(self.agent.run())
        return self.agent

    async def stop_gateway(self) -> None:
        """Stop the gateway's remote channel cleanly (it says ``offline``/``shutdown``)."""
        assert self._agent_task is not None and self.agent is not None
        await cancel(self._agent_task)
        self.agent.close()
        self._agent_task = None

    def ticket_for(self, device_id: str) -> str:
        """Open a manual ticket on ``device_id``, dispatched to engineer e1; its id."""
        made = desk.open_ticket(
            self.store,
            device_id,
            Tier.GENERAL,
            "check remotely",
            "hospital:s1",
            uuid.uuid4().hex,
            datetime.now(UTC),
        )
        assert made.assignee == "e1", made
        return made.id


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` until it has ended (infra.tasks: aiomqtt can lose a cancel)."""
    await stop_all([task])


@contextlib.asynccontextmanager
async def remote_site(port: int, tmp: Path, *, gateway: bool = True) -> AsyncIterator[Site]:
    """The service store with one site, two ultrasounds and an endoscope; consumers running."""
    db = tmp / "service.db"
    store = SqliteStore(db)
    store.put_site(site("s1"))
    for ident, kind in (
        ("us-000", DeviceKind.ULTRASOUND),
        ("endo-001", DeviceKind.ENDOSCOPE),
        ("us-002", DeviceKind.ULTRASOUND),
    ):
        store.put_device(device(ident, kind, site_id="s1"))
    store.put_engineer(engineer("e1", skills=frozenset(DeviceKind), capacity=50))
    store.put_engineer(engineer("e2", region="south"))
    tokens = mint_tokens(tmp / "tokens.json", TOKENS)
    settings = WorkerSettings(
        host="127.0.0.1",
        port=port,
        client_id=f"svc-{uuid.uuid4().hex[:6]}",
        reconnect_backoff_s=0.2,
    )
    app = create_app(ApiSettings(store_url=f"sqlite:///{db}", tokens_file=tmp / "tokens.json"))
    presence = PresenceConsumer(settings, store)
    relay = CommandRelay(settings, store, poll_s=0.1)
    outbox = Outbox(tmp / "outbox.db", GATEWAY)
    with TestClient(app) as api:
        here = Site(port, tmp, store, api, tokens, presence, relay, outbox)
        here.tasks = [asyncio.create_task(presence.run()), asyncio.create_task(relay.run())]
        if gateway:
            here.start_gateway()
        try:
            yield here
        finally:
            if here._agent_task is not None:
                await here.stop_gateway()
            for task in here.tasks:
                await cancel(task)
            outbox.close()
            store.close()
