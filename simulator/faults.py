"""Scripted faults: what goes wrong with a virtual device, and when (simulated seconds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    """Every fault the simulator can script."""

    INFECTION = "infection"  # fast (hours): wound warms, pH rises, exudate increases
    INFECTION_SLOW = "infection_slow"  # the same over days
    FEVER = "fever"  # systemic: every site warms for a day or so, pH and exudate unchanged
    SATURATION = "saturation"  # exudate accumulates fast until the dressing is changed
    DETACH = "detach"  # patch comes off the skin: temperature falls toward ambient
    SENSOR_FAULT = "sensor_fault"  # pH electrode goes erratic and offset (and is flagged)
    BATTERY_DRAIN = "battery_drain"  # battery drains many times faster
    MAINS_SAG = "mains_sag"  # supply voltage drops below the nominal band
    NG_FAULT = "ng_fault"  # neutral-to-ground voltage rises (bad earth, shared neutral)
    PROBE_DEGRADATION = "probe_degradation"  # probe health falls steadily
    ERROR_BURST = "error_burst"  # repeated error codes
    SILENCE = "silence"  # device stops reporting


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault on one device from ``start_s`` for ``duration_s`` simulated seconds."""

    device_id: str
    kind: FaultKind
    start_s: float
    duration_s: float = float("inf")

    def active(self, t_s: float) -> bool:
        """Whether the fault applies at simulated time ``t_s``."""
        return self.start_s <= t_s < self.start_s + self.duration_s

    def elapsed(self, t_s: float) -> float:
        """Seconds since the fault began (0 before it does)."""
        return max(0.0, t_s - self.start_s)


def active_fault(faults: Sequence[Fault], kind: FaultKind, t_s: float) -> Fault | None:
    """The first fault of ``kind`` in effect at ``t_s``, if any."""
    for fault in faults:
        if fault.kind == kind and fault.active(t_s):
            return fault
    return None
