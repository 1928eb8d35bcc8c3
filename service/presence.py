"""Presence decisions: a status message against what is stored → the new record and any alert.

Pure. A status belongs to a session (``online_since_us``); one from an older session than the
stored one is stale (a retained message delivered late) and changes nothing, as does the same
message again. An unexpected loss (``last_will``) of something that was online raises
``presence.offline`` at the instant the service learnt it — the broker publishes the will as
soon as it sees the connection drop, long before the silence rule's window runs out; coming
back online clears it. A clean ``shutdown`` raises nothing.
"""

from __future__ import annotations

from contract import AlertEvent, AlertTransition, Severity
from contract.presence import (
    DeviceInfoReport,
    PresenceKind,
    PresenceReason,
    PresenceState,
    PresenceStatus,
)
from service.model import Device
from service.presence_model import OFFLINE_RULE, PresenceRecord


def is_stale(previous: PresenceRecord | None, status: PresenceStatus) -> bool:
    """Whether ``status`` adds nothing to ``previous`` (a repeat, or an older session's)."""
    if previous is None:
        return False
    if previous.status == status:
        return True
    old, new = previous.status.online_since_us, status.online_since_us
    return old is not None and new is not None and new < old


def apply_status(
    previous: PresenceRecord | None, status: PresenceStatus, gateway_id: str, received_us: int
) -> tuple[PresenceRecord, AlertEvent | None]:
    """The record after ``status`` (received now), and the alert event it calls for, if any."""
    was_online = previous is not None and previous.state is PresenceState.ONLINE
    now_online = status.state is PresenceState.ONLINE
    changed = previous is None or previous.state is not status.state
    last_online = received_us if now_online or was_online else None
    record = PresenceRecord(
        subject_id=status.id,
        kind=status.kind,
        gateway_id=gateway_id,
        state=status.state,
        reason=status.reason,
        changed_at_us=received_us if changed or previous is None else previous.changed_at_us,
        online_since_us=status.online_since_us,
        last_online_us=last_online or (previous.last_online_us if previous else None),
        alert_raised=previous.alert_raised if previous else False,
        status=status,
    )
    alert = None
    if status.reason is PresenceReason.LAST_WILL and not record.alert_raised:
        alert = _alert(record, AlertTransition.RAISED, received_us)
        record = record.model_copy(update={"alert_raised": True})
    elif now_online and record.alert_raised:
        alert = _alert(record, AlertTransition.CLEARED, received_us)
        record = record.model_copy(update={"alert_raised": False})
    return record, alert


def _alert(record: PresenceRecord, transition: AlertTransition, at_us: int) -> AlertEvent:
    what = "gateway" if record.kind is PresenceKind.GATEWAY else "equipment"
    if transition is AlertTransition.RAISED:
        message = f"{what} {record.subject_id} lost its broker connection (MQTT last will)"
    else:
        message = f"{what} {record.subject_id} is back online"
    return AlertEvent(
        device_id=record.subject_id,
        rule_id=OFFLINE_RULE,
        severity=Severity.CRITICAL if record.kind is PresenceKind.GATEWAY else Severity.WARNING,
        transition=transition,
        at_us=at_us,
        message=message,
        evidence={
            "gateway_id": record.gateway_id,
            "reason": str(record.reason),
            "online_since_us": record.online_since_us,
            "last_online_us": record.last_online_us,
        },
    )


INFO_MISMATCH_RULE = "device.info_mismatch"


def info_mismatches(device: Device, report: DeviceInfoReport) -> dict[str, dict[str, str]]:
    """What the device says it is that contradicts the installed base (model, serial)."""
    found = {}
    for name, expected, reported in (
        ("model", device.model, report.model_number),
        ("serial", device.serial, report.serial_number),
    ):
        if expected.strip().casefold() != reported.strip().casefold():
            found[name] = {"installed_base": expected, "device": reported}
    return found


def firmware_update(device: Device, report: DeviceInfoReport) -> Device | None:
    """The device with the firmware it reports, if that moved on; None if nothing changed."""
    if device.firmware == report.firmware_revision:
        return None
    return device.model_copy(update={"firmware": report.firmware_revision})


def mismatch_alert(report: DeviceInfoReport, found: dict[str, dict[str, str]]) -> AlertEvent:
    """The event a contradiction raises: a wrong device paired, or a wrong record."""
    names = ", ".join(sorted(found))
    return AlertEvent(
        device_id=report.device_id,
        rule_id=INFO_MISMATCH_RULE,
        severity=Severity.WARNING,
        transition=AlertTransition.RAISED,
        at_us=report.at_us,
        message=f"{report.device_id} reports a {names} other than the installed base's",
        evidence={"gateway_id": report.gateway_id, **{k: str(v) for k, v in found.items()}},
    )
