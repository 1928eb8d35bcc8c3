"""Build alert events and their evidence; shared by the engine and the reference so they agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract.alert import AlertEvent, AlertTransition
from rules.model import CompositeRule, SignalRule, SilenceRule

DISCLAIMER = "configurable default, not a diagnosis"


def window_start(rule: SignalRule, at_us: int, since_us: int) -> int:
    """Earliest timestamp shown as evidence: the sustain start or the rule's window."""
    span = getattr(rule, "window", None) or getattr(rule, "within", None)
    if span:
        return min(since_us, at_us - int(span) + 1)
    return since_us


def signal_event(
    rule: SignalRule,
    device_id: str,
    transition: AlertTransition,
    at_us: int,
    signal: float,
    window: Sequence[tuple[int, float]],
    extra: dict[str, Any] | None = None,
) -> AlertEvent:
    """An event for a value-driven rule with the readings and thresholds behind it."""
    evidence: dict[str, Any] = {
        "rule": rule.id,
        "kind": rule.kind,
        "metric": rule.metric,
        "signal": signal,
        "raise": rule.raise_.describe(),
        "clear": rule.clear.describe(),
        "window": [[ts, value] for ts, value in window],
        "source": rule.source,
    }
    if rule.default:
        evidence["note"] = DISCLAIMER
    evidence.update(extra or {})
    verb = "raised" if transition is AlertTransition.RAISED else "cleared"
    message = rule.message or f"{rule.id} {verb}: {rule.metric} signal {signal:.4g}"
    return AlertEvent(
        device_id=device_id,
        rule_id=rule.id,
        severity=rule.severity,
        transition=transition,
        at_us=at_us,
        message=message,
        evidence=evidence,
    )


def silence_event(
    rule: SilenceRule, device_id: str, transition: AlertTransition, at_us: int, last_us: int
) -> AlertEvent:
    """An event for a silence rule: when the series was last heard from."""
    evidence: dict[str, Any] = {
        "rule": rule.id,
        "kind": rule.kind,
        "metric": rule.scope.metric,
        "after_us": rule.after,
        "last_reading_us": last_us,
        "source": rule.source,
    }
    if rule.default:
        evidence["note"] = DISCLAIMER
    what = rule.scope.metric or "any metric"
    verb = "no data" if transition is AlertTransition.RAISED else "data resumed"
    message = rule.message or f"{rule.id}: {verb} ({what})"
    return AlertEvent(
        device_id=device_id,
        rule_id=rule.id,
        severity=rule.severity,
        transition=transition,
        at_us=at_us,
        message=message,
        evidence=evidence,
    )


def composite_event(
    rule: CompositeRule,
    device_id: str,
    transition: AlertTransition,
    at_us: int,
    active: Sequence[str],
) -> AlertEvent:
    """An event for a composite rule naming which components were active."""
    evidence: dict[str, Any] = {
        "rule": rule.id,
        "kind": rule.kind,
        "all_of" if rule.all_of is not None else "any_of": rule.components,
        "active": list(active),
        "source": rule.source,
    }
    if rule.default:
        evidence["note"] = DISCLAIMER
    message = rule.message or f"{rule.id} {transition.value}"
    return AlertEvent(
        device_id=device_id,
        rule_id=rule.id,
        severity=rule.severity,
        transition=transition,
        at_us=at_us,
        message=message,
        evidence=evidence,
    )


def event_order(event: AlertEvent) -> tuple[int, str, str, str]:
    """The canonical order of events returned by one call."""
    return (event.at_us, event.device_id, event.rule_id, event.transition.value)
