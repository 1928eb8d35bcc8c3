"""A patient's own words on their help request: kept with the ticket, told to who handles it.

"Request help" alone tells the care team that something is wrong, not what: "the dressing is
leaking", "it hurts more since this morning". The patient may add a message; it is stored on
the help ticket (new or already open) as an evidence item marked as the patient's (the ticket
page and vigilance reports list evidence), audited without its text (the audit log is kept for
ever; the text stays with the ticket), and announced over the notification outbox to the
ticket's team, engineer and hospital, with the text. A ticket holds at most
``MAX_MESSAGES`` of them: past that the care team is already on it, and a stuck button or a
script cannot grow a ticket without bound.
"""

from __future__ import annotations

from datetime import datetime

from contract import Severity
from service import desk
from service.model import Evidence, Ticket
from service.notifications import Notification, NotifyConfig, outbox_items, ticket_notifications
from service.store import ServiceStore

MAX_MESSAGES = 20
MAX_CHARS = 1000
FROM_PATIENT = "patient"  # ``Evidence.data["from"]`` of a patient's message
EVENT = "ticket.patient_message"


class TooManyMessages(Exception):
    """The ticket already holds ``MAX_MESSAGES`` patient messages."""


def patient_messages(ticket: Ticket) -> list[Evidence]:
    """The patient's messages on ``ticket``, oldest first."""
    return [e for e in ticket.evidence if e.data.get("from") == FROM_PATIENT]


def add_message(store: ServiceStore, ticket: Ticket, text: str, actor: str, at: datetime) -> Ticket:
    """Keep ``text`` on ``ticket`` and queue its notifications; the ticket as stored.

    Call inside the transaction that read ``ticket`` (its version guards the write).
    """
    count = len(patient_messages(ticket))
    if count >= MAX_MESSAGES:
        raise TooManyMessages(
            f"this request already holds {MAX_MESSAGES} messages; your care team will contact you"
        )
    item = Evidence(at=at, severity=Severity.INFO, message=text, data={"from": FROM_PATIENT})
    updated = ticket.model_copy(update={"evidence": (*ticket.evidence, item)})
    stored = desk.save(store, updated, actor, "patient_message", at, {"chars": len(text)})
    device = store.device(stored.device_id)
    notes = [
        Notification(
            n.role,
            n.subject,
            EVENT,
            {**n.payload, "patient_message": text},
            occurrence=str(count + 1),  # each message its own event id
            urgent=n.urgent,
        )
        for n in ticket_notifications(stored, device, EVENT, at, store.sla)
        if n.role != "patient"  # not echoed back to the one who wrote it
    ]
    # The API has no webhook configuration: MQTT subscribers hear it now (as on a resolve).
    store.enqueue_notifications(outbox_items(notes, NotifyConfig(), at))
    return stored
