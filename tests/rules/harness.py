"""Shared helpers for rule tests: run the engine and the reference side by side."""

from __future__ import annotations

from collections.abc import Sequence

from contract.alert import AlertEvent
from contract.catalog import METRICS
from contract.reading import Reading
from rules import ReferenceEngine, RuleEngine, parse_rules
from rules.model import AnyRule
from rules.registry import Registry

# An epoch offset in microseconds, on a UTC midnight so that time buckets (aligned to the epoch)
# start on whole test minutes and hours.
T0 = 864_000_000_000
MIN = 60_000_000

Step = Sequence[Reading] | int  # a batch of readings, or a tick at that time


def rules_from(yaml_text: str) -> list[AnyRule]:
    """Rules from inline YAML (``source`` defaults so tests stay short)."""
    return parse_rules(yaml_text, "test.yaml")


def at(minute: float) -> int:
    """The test clock: microseconds at ``minute``."""
    return T0 + round(minute * MIN)


def r(device: str, metric: str, minute: float, value: float, seq: int = 0) -> Reading:
    """A reading at a test-clock minute."""
    return Reading(device, metric, value, METRICS[metric].unit, at(minute), seq)


def run(
    rules: Sequence[AnyRule],
    steps: Sequence[Step],
    registry: Registry | None = None,
    capacity: int = 32,
) -> list[AlertEvent]:
    """Feed steps to both engines, assert they agree, return the engine's events."""
    engine = RuleEngine(rules, registry, window_capacity=capacity)
    reference = ReferenceEngine(rules, registry, window_capacity=capacity)
    events: list[AlertEvent] = []
    for step in steps:
        if isinstance(step, int):
            got, want = engine.tick(step), reference.tick(step)
        else:
            got, want = engine.process_readings(step), reference.process(step)
        assert got == want
        events += got
    assert engine.stats == reference.stats
    return events


def summary(events: Sequence[AlertEvent]) -> list[tuple[float, str, str, str]]:
    """(minute, device, rule, transition) per event, for readable assertions."""
    return [((e.at_us - T0) / MIN, e.device_id, e.rule_id, e.transition.value) for e in events]


def each(readings: Sequence[Reading]) -> list[list[Reading]]:
    """One batch per reading."""
    return [[x] for x in readings]
