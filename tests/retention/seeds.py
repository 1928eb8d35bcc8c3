"""Records of every kind retention prunes, old and recent, for the retention tests."""

from __future__ import annotations

from datetime import timedelta

from contract import Batch, Reading, WoundBaseline
from infra.retention import DAY_US
from infra.telemetry import DeadLetter, ReadingStore
from infra.time_us import datetime_from_us
from service.model import Channel, Delivery, OutboxItem, OutboxStatus
from service.model import DeadLetter as ServiceLetter
from service.store import ServiceStore


def seed_telemetry(store: ReadingStore, now: int) -> None:
    """Readings 500 and 1 days old, dead letters 100 and 1 days old, wound baselines of
    patches last heard 40 and 1 days ago."""
    for seq, days in enumerate((500, 1)):
        ts = now - days * DAY_US
        readings = tuple(Reading(f"p-{days}", "battery", 80.0, "%", ts + i, i) for i in range(3))
        store.store_batches([Batch("gw-1", seq, readings)])
        store.store_dead_letters([DeadLetter(ts, "t", f"{days} days", b"{")])
    store.store_baselines(
        [
            WoundBaseline(f"p-{days}", "dressing.temp.rise", "wound_temp", 33.0, None, at)
            for days, at in ((40, now - 40 * DAY_US), (1, now - DAY_US))
        ]
    )


def seed_service(store: ServiceStore, now: int) -> None:
    """A delivered notification, its delivery and a dead letter 100 days old, and of yesterday."""
    for key, days in (("old", 100), ("new", 1)):
        at = datetime_from_us(now) - timedelta(days=days)
        done = OutboxItem(
            key=key,
            event_id=key,
            channel=Channel.MQTT,
            target="vigil/v1/notify/service/team",
            role="service",
            subject="team",
            event="ticket.opened",
            payload={},
            created_at=at,
            next_at=at,
            attempts=1,
            status=OutboxStatus.DONE,
        )
        store.enqueue_notifications([done])
        store.record_delivery(Delivery(event_id=key, url="mqtt://x", attempt=1, at=at, ok=True))
        store.dead_letter(ServiceLetter(received_at=at, topic="t", reason="bad", payload=b"{"))
