"""Build alert events and their evidence; shared by the engine and the reference so they agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from contract.alert import AlertEvent, AlertTransition
from rules.model import (
    AnyRule,
    CompositeRule,
    RateRule,
    RepeatingRule,
    SignalRule,
    SilenceRule,
    ZScoreRule,
)

DISCLAIMER = "configurable default, not a diagnosis"


def finite(value: Any) -> Any:
    """Floats that are NaN or infinite become None: evidence is JSON, which has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evidence_span(rule: SignalRule) -> int:
    """How far back a rule's evidence reaches besides its sustain run (0: just the run).

    The raw-window kinds (rate, zscore, repeating) show the ring readings of their window, so
    their metric's ring holds every reading; the others show their run and their aggregates.
    """
    if isinstance(rule, RepeatingRule):
        return rule.within
    if isinstance(rule, RateRule | ZScoreRule):
        return rule.window
    return 0


def window_start(rule: SignalRule, at_us: int, since_us: int) -> int:
    """Earliest timestamp shown as evidence: the sustain start or the rule's window."""
    span = evidence_span(rule)
    if span:
        return min(since_us, at_us - span + 1)
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
        "signal": finite(signal),
        "raise": rule.raise_.describe(),
        "clear": rule.clear.describe(),
        "window": [[ts, value] for ts, value in window],
        "source": rule.source,
    }
    if rule.confirm:
        evidence["confirm"] = rule.confirm
    if rule.default:
        evidence["note"] = DISCLAIMER
    evidence.update({key: finite(value) for key, value in (extra or {}).items()})
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
    combinator = "all_of" if rule.all_of is not None else "any_of" if rule.any_of else "of"
    evidence: dict[str, Any] = {
        "rule": rule.id,
        "kind": rule.kind,
        combinator: rule.components,
        "active": list(active),
        "source": rule.source,
    }
    if rule.at_least is not None:
        evidence["at_least"] = rule.at_least
    if rule.for_us:
        evidence["for"] = rule.for_us
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


def superseded_event(
    rule: AnyRule, device_id: str, at_us: int, by_device: str, metric: str | None
) -> AlertEvent:
    """A clear because a newer patch of the same wound superseded this one."""
    evidence: dict[str, Any] = {
        "rule": rule.id,
        "kind": rule.kind,
        "metric": metric,
        "reason": "superseded",
        "superseded_by": by_device,
        "source": rule.source,
    }
    if rule.default:
        evidence["note"] = DISCLAIMER
    return AlertEvent(
        device_id=device_id,
        rule_id=rule.id,
        severity=rule.severity,
        transition=AlertTransition.CLEARED,
        at_us=at_us,
        message=f"{rule.id} cleared: patch superseded by {by_device}",
        evidence=evidence,
    )


def event_order(event: AlertEvent) -> tuple[int, str, bool, str]:
    """The canonical order of events returned by one call: by time and device, a composite
    after the component transitions of the same time that caused it; a stable sort keeps a
    raise before the clear of the same alert at the same time."""
    composite = event.evidence.get("kind") == "composite"
    return (event.at_us, event.device_id, composite, event.rule_id)
