"""Registering a device from its UDI, and the alerts an expired or recalled lot raises.

A device from a recalled lot raises a critical alert, an expired one a warning; each opens a
ticket through the service desk's ordinary alert intake (audited, dispatched, SLA-timed). A
device gets at most one such ticket per rule, so checking the lots again opens nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from contract import AlertEvent, AlertTransition, Severity
from infra.time_us import us_from_datetime
from service.desk import intake_alert, put_installed
from service.model import Device, Patient, Ticket
from service.sla import SlaConfig
from service.store import ServiceStore
from service.traceability.model import Recall, UdiRecord

RECALLED_RULE = "udi.lot_recalled"
EXPIRED_RULE = "udi.expired"


class RegistrationRefused(ValueError):
    """The registration contradicts what is stored (another device under that id, a patient
    of another site); the message says what."""


@dataclass(frozen=True, slots=True)
class Registration:
    """What registering one device did: the alerts its lot raised and the tickets they opened."""

    device: Device
    udi: UdiRecord
    alerts: tuple[AlertEvent, ...]
    tickets: tuple[Ticket, ...]


def lot_alerts(
    device_id: str,
    lot: str,
    gtin: str,
    expiry: date | None,
    recalls: Sequence[Recall],
    today: date,
    at: datetime,
) -> list[AlertEvent]:
    """The alerts a device of ``lot``/``gtin`` expiring on ``expiry`` raises ``today``."""
    found = []
    base: dict[str, object] = {"kind": "udi", "lot": lot, "gtin": gtin}
    for recall in recalls:
        if lot and recall.covers(lot, gtin):
            evidence = base | {"rule": RECALLED_RULE, "reason": recall.reason}
            evidence["recalled_at"] = recall.recorded_at.isoformat()
            message = f"lot {lot} is recalled" + (f": {recall.reason}" if recall.reason else "")
            found.append(_alert(device_id, RECALLED_RULE, Severity.CRITICAL, at, message, evidence))
            break
    if expiry is not None and expiry < today:
        evidence = base | {"rule": EXPIRED_RULE, "expiry": expiry.isoformat()}
        message = f"used past its expiry date {expiry.isoformat()} (lot {lot or '-'})"
        found.append(_alert(device_id, EXPIRED_RULE, Severity.WARNING, at, message, evidence))
    return found


def _alert(
    device_id: str,
    rule: str,
    severity: Severity,
    at: datetime,
    message: str,
    evidence: dict[str, object],
) -> AlertEvent:
    return AlertEvent(
        device_id=device_id,
        rule_id=rule,
        severity=severity,
        transition=AlertTransition.RAISED,
        at_us=us_from_datetime(at),
        message=message,
        evidence=evidence,
    )


def _has_ticket(store: ServiceStore, device_id: str, rule_id: str) -> bool:
    return any(t.rule_id == rule_id for t in store.tickets(device_ids=[device_id]))


def raise_alerts(
    store: ServiceStore, alerts: Sequence[AlertEvent], at: datetime, sla: SlaConfig
) -> list[Ticket]:
    """Open a ticket for each alert whose (device, rule) never had one; the tickets opened."""
    opened = []
    for alert in alerts:
        if _has_ticket(store, alert.device_id, alert.rule_id):
            continue
        ticket, _ = intake_alert(store, alert, at, sla)
        if ticket is not None:
            opened.append(ticket)
    return opened


def _add_to_kit(store: ServiceStore, device: Device, actor: str, at: datetime) -> None:
    """Make ``device`` part of its patient's kit (creating the pseudonymous patient)."""
    assert device.patient is not None
    patient = store.patient(device.patient)
    if patient is not None and patient.site_id != device.site_id:
        raise RegistrationRefused(f"patient {patient.id} belongs to another site")
    kit = patient.kit if patient is not None else ()
    if device.id not in kit:
        put_installed(
            store,
            Patient(id=device.patient, site_id=device.site_id, kit=(*kit, device.id)),
            actor,
            at,
        )


def register(
    store: ServiceStore,
    device: Device,
    udi: UdiRecord,
    *,
    actor: str,
    at: datetime,
    sla: SlaConfig,
) -> Registration:
    """Store ``device`` with its UDI (audited), then raise the alerts its lot calls for."""
    if store.site(device.site_id) is None:
        raise RegistrationRefused(f"no site {device.site_id}")
    with store.atomic():
        known = store.udi(device.id)
        if known is not None and (known.gtin, known.serial) != (udi.gtin, udi.serial):
            raise RegistrationRefused(
                f"device {device.id} is registered with another UDI ({known.hri})"
            )
        if known is not None:  # a repeated scan keeps what the first one added
            udi = udi.model_copy(
                update={
                    "ble_address": udi.ble_address or known.ble_address,
                    "system_id": udi.system_id or known.system_id,
                    "manufacturer": udi.manufacturer or known.manufacturer,
                    "registered_at": known.registered_at,
                }
            )
        put_installed(store, device, actor, at)
        store.put_udi(udi)
        store.append_audit(at, actor, "udi_registered", device.id, {"hri": udi.hri})
        if device.patient:
            _add_to_kit(store, device, actor, at)
    alerts = lot_alerts(device.id, udi.lot, udi.gtin, udi.expiry, store.recalls(), at.date(), at)
    return Registration(device, udi, tuple(alerts), tuple(raise_alerts(store, alerts, at, sla)))


def check_lots(store: ServiceStore, at: datetime, sla: SlaConfig) -> list[Ticket]:
    """Raise the alerts every device's lot calls for now (after a recall, say)."""
    recalls, records = store.recalls(), {r.device_id: r for r in store.udis()}
    alerts = []
    for device in store.devices():
        record = records.get(device.id)
        lot = device.lot or (record.lot if record else "")
        gtin, expiry = (record.gtin, record.expiry) if record else ("", None)
        alerts += lot_alerts(device.id, lot, gtin, expiry, recalls, at.date(), at)
    return raise_alerts(store, alerts, at, sla)
