"""Row helpers both store implementations share: the same columns from the same objects."""

from __future__ import annotations

from datetime import UTC, datetime

from service.concurrency import ConcurrentUpdate
from service.model import OutboxItem, Ticket


def outbox_row(item: OutboxItem) -> tuple[str, str, str, float, str]:
    """The outbox columns of ``item``: key, event id, status, next try (epoch s), document."""
    return (
        item.key,
        item.event_id,
        str(item.status),
        item.next_at.timestamp(),
        item.model_dump_json(),
    )


def utc_text(at: datetime) -> str:
    """An aware instant as ISO text in UTC; a naive one is refused."""
    if at.tzinfo is None:
        raise ValueError("cursor instants must be aware")
    return at.astimezone(UTC).isoformat()


def ticket_doc(ticket: Ticket) -> str:
    """The stored document of ``ticket``; its version lives in its own column, not in here."""
    return ticket.model_dump_json(exclude={"version"})


def ticket_at(doc: str | bytes, version: int) -> Ticket:
    """A stored ticket document read at ``version``."""
    return Ticket.model_validate_json(doc).model_copy(update={"version": version})


def ticket_conflict(ticket: Ticket) -> ConcurrentUpdate:
    """The error of a ticket write that lost to another writer."""
    if ticket.version == 0:
        return ConcurrentUpdate(f"ticket {ticket.id} already exists")
    return ConcurrentUpdate(
        f"ticket {ticket.id} changed since it was read at version {ticket.version}; "
        "read it again and retry"
    )
