"""Alert acknowledgements: kept in the audit log (who, when, the note), read back incrementally.

An acknowledgement is clinical record, so it goes where the API's own actions go: one chained,
optionally signed audit entry (action ``alert.acknowledge``, subject the device). To show them,
``AckBook`` follows the audit log from the last sequence number it read (an indexed range read,
a page at a time) and keeps only acknowledgements; the first read of a process walks the log
once. A later audit entry for the same alert (another nurse) replaces the earlier one on screen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from contract import AlertEvent
from service.audit import parse_rows
from service.store import ServiceStore

ACTION = "alert.acknowledge"
PAGE = 2000

AlertId = tuple[str, str, int]  # device, rule, raised at (µs)


def alert_id(event: AlertEvent) -> AlertId:
    """What an acknowledgement names an alert by."""
    return (event.device_id, event.rule_id, event.at_us)


@dataclass(frozen=True, slots=True)
class Ack:
    """Who acknowledged an alert, when, and their note."""

    by: str
    at: datetime
    note: str


class AckBook:
    """The acknowledgements of this store's audit log, caught up on every read."""

    def __init__(self, store: ServiceStore) -> None:
        self._store = store
        self._seq = 0
        self._acks: dict[AlertId, Ack] = {}
        self._lock = threading.Lock()

    def acknowledge(self, event: AlertEvent, by: str, note: str, at: datetime) -> Ack:
        """Record an acknowledgement of ``event`` in the audit log."""
        data = {"rule_id": event.rule_id, "at_us": event.at_us, "note": note}
        self._store.append_audit(at, by, ACTION, event.device_id, data)
        return Ack(by, at, note)

    def of(self, events: list[AlertEvent]) -> dict[AlertId, Ack]:
        """The acknowledgements of ``events`` that exist."""
        with self._lock:
            self._catch_up()
            found = {alert_id(e): self._acks.get(alert_id(e)) for e in events}
        return {k: v for k, v in found.items() if v is not None}

    def _catch_up(self) -> None:
        while True:
            rows = self._store.audit_rows_after(self._seq, PAGE)
            entries, _ = parse_rows(rows)
            for entry in entries:
                self._seq = max(self._seq, entry.seq)
                if entry.action == ACTION:
                    self._read(entry.subject, entry.actor, entry.at, entry.data)
            if len(rows) < PAGE:
                return
            if not entries:  # unreadable rows only: step past them rather than loop
                self._seq += PAGE

    def _read(self, device_id: str, by: str, at: datetime, data: object) -> None:
        if not isinstance(data, dict):
            return
        rule, raised, note = data.get("rule_id"), data.get("at_us"), data.get("note", "")
        if isinstance(rule, str) and isinstance(raised, int):
            self._acks[(device_id, rule, raised)] = Ack(by, at, str(note))
