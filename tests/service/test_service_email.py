"""The e-mail channel against a real SMTP server (aiosmtpd on a free local port)."""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from contract import DeviceKind
from service.email import EVENT_ID_HEADER, SmtpConfig
from service.lifecycle import Dispatch
from service.model import Channel, OutboxItem, OutboxStatus
from service.notifications import NotifyConfig, RecipientPrefs, opened_notifications, outbox_items
from service.sender import NotificationSender
from service.sla import SlaConfig
from service.store import SqliteStore
from service.worker_settings import WorkerSettings
from tests.servers import free_port, starts_server
from tests.service.factories import T0, device, ticket, walk
from tests.waiting import wait_until_async

CARER = "carer@home.example"
NURSE = "nurse@ward.example"


@dataclass
class Inbox:
    """What the SMTP server received, and the replies it gives to chosen recipients."""

    port: int
    messages: list[Message] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
@starts_server
def inbox() -> Iterator[Inbox]:
    box = Inbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def config(port: int) -> NotifyConfig:
    return NotifyConfig(
        smtp=SmtpConfig(host="127.0.0.1", port=port, sender="desk@vigil.example", timeout_s=5),
        recipients={
            "patient/pt-1": RecipientPrefs(channels={Channel.EMAIL}, emails=(CARER,)),
            "clinical/s1": RecipientPrefs(channels={Channel.EMAIL}, emails=(NURSE,)),
        },
        attempts=3,
        backoff_s=0.05,
        backoff_cap_s=0.1,
    )


def queue(store: SqliteStore, notify: NotifyConfig) -> list[OutboxItem]:
    kit = device("k1", DeviceKind.PATCH).model_copy(update={"patient": "pt-1"})
    t = walk(ticket(device_id="k1", rule_id="dressing.infection_signs"), (Dispatch("e1", "x"), T0))
    notes = [
        n
        for n in opened_notifications(t, kit, T0, SlaConfig())
        if n.role in ("patient", "clinical")
    ]
    items = [i for i in outbox_items(notes, notify, T0) if i.channel is Channel.EMAIL]
    store.enqueue_notifications(items)
    return items


async def send_until(store: SqliteStore, notify: NotifyConfig, done: Any) -> None:
    sender = NotificationSender(WorkerSettings(notify=notify, outbox_poll_s=0.05), store)
    async with sender.running():
        await wait_until_async(done, 20, "e-mail attempts settled")


async def test_emails_reach_a_real_smtp_server(inbox: Inbox) -> None:
    store, notify = SqliteStore(), config(inbox.port)
    items = queue(store, notify)
    assert {i.target for i in items} == {CARER, NURSE}
    await send_until(store, notify, lambda: not store.pending_notifications())
    assert {i.status for i in store.notifications()} == {OutboxStatus.DONE}
    by_to = {m["To"]: m for m in inbox.messages}
    assert set(by_to) == {CARER, NURSE}
    carer = by_to[CARER]
    assert carer["From"] == "desk@vigil.example" and "ticket t1" in carer["Subject"]
    assert carer[EVENT_ID_HEADER] == next(i.event_id for i in items if i.target == CARER)
    body = carer.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert text.startswith("The readings from your dressing suggest your wound may be")
    assert "engineer" not in text
    deliveries = store.deliveries()
    assert {d.url for d in deliveries} == {f"mailto:{CARER}", f"mailto:{NURSE}"}
    assert all(d.ok and d.status == 250 for d in deliveries)
    store.close()


async def test_a_refused_address_fails_at_once_and_a_busy_one_is_retried(inbox: Inbox) -> None:
    inbox.refuse = {CARER: "550 5.1.1 no such user", NURSE: "451 4.3.0 try again later"}
    store, notify = SqliteStore(), config(inbox.port)
    queue(store, notify)

    def settled() -> bool:
        status = {i.target: i for i in store.notifications()}
        return status[CARER].status is OutboxStatus.FAILED and status[NURSE].attempts >= 3

    await send_until(store, notify, settled)
    by_target = {i.target: i for i in store.notifications()}
    assert by_target[CARER].attempts == 1 and "550" in by_target[CARER].last_error
    assert by_target[NURSE].status is OutboxStatus.FAILED  # 3 transient tries, then given up
    codes = sorted((d.url, d.status) for d in store.deliveries())
    assert codes == [(f"mailto:{CARER}", 550)] + [(f"mailto:{NURSE}", 451)] * 3
    assert inbox.messages == []
    store.close()


async def test_an_unreachable_smtp_server_is_retried() -> None:
    store, notify = SqliteStore(), config(free_port())  # nothing listens there
    queue(store, notify)
    await send_until(store, notify, lambda: all(i.attempts >= 2 for i in store.notifications()))
    assert all(d.status is None and not d.ok for d in store.deliveries())
    assert all("Error" in d.error for d in store.deliveries())
    store.close()


async def test_email_without_an_smtp_server_is_a_permanent_failure() -> None:
    store = SqliteStore()
    queue(store, config(free_port()))
    notify = NotifyConfig(attempts=3)  # the SMTP section was removed since the items were queued
    await send_until(
        store, notify, lambda: all(i.status is OutboxStatus.FAILED for i in store.notifications())
    )
    assert {i.last_error for i in store.notifications()} == {
        "PermanentError: no SMTP server configured"
    }
    store.close()
