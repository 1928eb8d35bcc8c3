"""The metric catalog: every quantity vigil carries, with its unit and physically valid range."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contract.errors import printable


class DeviceKind(StrEnum):
    """What sort of device produced a reading."""

    PATCH = "patch"
    ULTRASOUND = "ultrasound"
    ENDOSCOPE = "endoscope"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its unit and the range a working sensor can physically report."""

    name: str
    unit: str
    low: float
    high: float
    integral: bool = False
    description: str = ""


# Ranges are physical limits of the sensors, not clinical alarm limits (those live in rules/).
METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("wound_ph", "pH", 0.0, 14.0, description="wound-bed pH"),
        MetricSpec("wound_temp", "degC", 0.0, 50.0, description="wound-bed temperature"),
        MetricSpec("skin_temp", "degC", 0.0, 50.0, description="peri-wound skin temperature"),
        MetricSpec("exudate", "%", 0.0, 100.0, description="dressing exudate saturation"),
        MetricSpec("battery", "%", 0.0, 100.0, description="battery state of charge"),
        MetricSpec(
            "status_flags",
            "flags",
            0.0,
            255.0,
            integral=True,
            description="patch status bits: 1 off skin, 2 sensor fault, 4 low battery",
        ),
        MetricSpec("rssi", "dBm", -127.0, 20.0, integral=True, description="received signal"),
        MetricSpec("mains_voltage", "V", 0.0, 300.0, description="mains supply voltage (RMS)"),
        MetricSpec("ng_voltage", "V", 0.0, 50.0, description="neutral-to-ground voltage (RMS)"),
        MetricSpec("probe_health", "%", 0.0, 100.0, description="probe self-test health score"),
        MetricSpec(
            "error_code",
            "code",
            0.0,
            65535.0,
            integral=True,
            description="equipment error code; 0 means no error",
        ),
        MetricSpec("usage_hours", "h", 0.0, 1_000_000.0, description="cumulative hours in use"),
    )
}


def metric_spec(name: str) -> MetricSpec:
    """The catalog entry for ``name``; KeyError names the unknown metric."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}") from None


# What each kind of device measures; a reading of another metric from it is rejected, so a
# mislabelled or spoofed device cannot feed another kind's rules.
PATCH_METRICS = frozenset(
    {"wound_ph", "wound_temp", "skin_temp", "exudate", "battery", "status_flags", "rssi"}
)
EQUIPMENT_METRICS = frozenset(
    {"mains_voltage", "ng_voltage", "probe_health", "error_code", "usage_hours"}
)
KIND_METRICS: dict[DeviceKind, frozenset[str]] = {
    DeviceKind.PATCH: PATCH_METRICS,
    DeviceKind.ULTRASOUND: EQUIPMENT_METRICS,
    DeviceKind.ENDOSCOPE: EQUIPMENT_METRICS,
}


def kind_metric_problem(kind: DeviceKind, metric: str) -> str | None:
    """Why ``metric`` cannot come from a device of ``kind``, or None when it can."""
    if metric not in METRICS:
        return f"unknown metric {printable(repr(metric), 80)}"
    if metric not in KIND_METRICS[kind]:
        return f"metric {metric!r} is not one a {kind.value} reports"
    return None
