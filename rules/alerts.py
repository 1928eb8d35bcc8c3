"""Alert lifecycle in memory: raised -> acknowledged -> cleared, one per (device, rule).

A raise for a (device, rule) already active is a repeat and dropped, unless it is of higher
severity (the rule was redefined more severe while the alert was up): then it replaces the
alert, keeping its raise time and acknowledgement, and is passed on as an escalation. A clear
or acknowledgement stamped before its alert's raise is passed on stamped at the raise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from contract.alert import AlertEvent, AlertTransition, Severity


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert that has been raised and not yet cleared."""

    device_id: str
    rule_id: str
    severity: Severity
    raised_at_us: int
    message: str
    evidence: dict[str, Any]
    acknowledged_at_us: int | None = None
    acknowledged_by: str = ""

    @property
    def acknowledged(self) -> bool:
        """Whether someone has taken ownership of it."""
        return self.acknowledged_at_us is not None


class AlertBook:
    """Tracks active alerts from engine events and records acknowledgements."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str], ActiveAlert] = {}

    def __len__(self) -> int:
        return len(self._active)

    def get(self, device_id: str, rule_id: str) -> ActiveAlert | None:
        """The active alert for (device, rule), if any."""
        return self._active.get((device_id, rule_id))

    def active(self) -> list[ActiveAlert]:
        """All active alerts, oldest first."""
        return sorted(self._active.values(), key=lambda a: (a.raised_at_us, a.device_id, a.rule_id))

    def restore(self, alert: ActiveAlert) -> None:
        """Put back an alert saved from an earlier run (see ``RuleRuntime`` snapshots)."""
        self._active[(alert.device_id, alert.rule_id)] = alert

    def apply(self, events: Iterable[AlertEvent]) -> list[AlertEvent]:
        """Fold events into the book; returns those that changed it (repeats are dropped)."""
        changed = []
        for event in events:
            key = (event.device_id, event.rule_id)
            current = self._active.get(key)
            if event.transition is AlertTransition.RAISED:
                if current is not None:
                    if event.severity <= current.severity:
                        continue  # exactly one active alert per (device, rule)
                    self._active[key] = replace(
                        current,
                        severity=event.severity,
                        message=event.message,
                        evidence={**event.evidence, "escalated_from": current.severity.name},
                    )
                    changed.append(event)
                    continue
                self._active[key] = ActiveAlert(
                    event.device_id,
                    event.rule_id,
                    event.severity,
                    event.at_us,
                    event.message,
                    event.evidence,
                )
                changed.append(event)
                continue
            if current is None:
                continue
            if event.at_us < current.raised_at_us:
                event = event.model_copy(update={"at_us": current.raised_at_us})
            if event.transition is AlertTransition.ACKNOWLEDGED:
                if current.acknowledged:
                    continue
                by = str(event.evidence.get("acknowledged_by", ""))
                self._active[key] = replace(
                    current, acknowledged_at_us=event.at_us, acknowledged_by=by
                )
            else:
                del self._active[key]
            changed.append(event)
        return changed

    def acknowledge(self, device_id: str, rule_id: str, at_us: int, by: str = "") -> AlertEvent:
        """Acknowledge the active alert; KeyError if none, ValueError if already acknowledged."""
        current = self._active.get((device_id, rule_id))
        if current is None:
            raise KeyError(f"no active alert for rule {rule_id!r} on device {device_id!r}")
        if current.acknowledged:
            raise ValueError(f"alert {rule_id!r} on {device_id!r} is already acknowledged")
        event = AlertEvent(
            device_id=device_id,
            rule_id=rule_id,
            severity=current.severity,
            transition=AlertTransition.ACKNOWLEDGED,
            at_us=at_us,
            message=current.message,
            evidence={"acknowledged_by": by, "raised_at_us": current.raised_at_us},
        )
        self.apply([event])
        return event
