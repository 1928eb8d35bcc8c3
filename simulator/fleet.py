"""A deterministic fleet: the same seed always yields the same devices, faults and readings."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from contract import METRICS, DeviceKind, EquipmentMessage, Reading
from simulator.equipment import EquipmentModel
from simulator.faults import Fault
from simulator.patch import PatchModel


def _midnight_days_ago_us(days: int) -> int:
    """UTC midnight ``days`` days before today, in µs: inside every validation window."""
    day_us = 86_400 * 1_000_000
    return (time.time_ns() // 1000 // day_us - days) * day_us


# A fixed date would drift out of the edge's timestamp window (docs/contract.md) as the calendar
# moves on; midnight a month ago keeps runs deterministic within a day and always acceptable.
DEFAULT_START_US = _midnight_days_ago_us(30)

OFF_SKIN = 1
SENSOR_FAULT = 2
LOW_BATTERY = 4


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """How many devices of each sort, which faults, and the simulated clock."""

    seed: int = 7
    patches: int = 50
    equipment: int = 5
    site: str = "site-a"
    faults: tuple[Fault, ...] = ()
    start_us: int = DEFAULT_START_US
    tick_s: float = 60.0  # simulated seconds between two samples of every device


def patch_id(index: int) -> str:
    """The id of the index-th patch."""
    return f"patch-{index:04d}"


def equipment_id(index: int) -> str:
    """The id of the index-th piece of equipment (alternating ultrasound and endoscope)."""
    kind = equipment_kind(index)
    return f"{'us' if kind == DeviceKind.ULTRASOUND else 'endo'}-{index:03d}"


def equipment_kind(index: int) -> DeviceKind:
    """Which kind the index-th piece of equipment is."""
    return DeviceKind.ULTRASOUND if index % 2 == 0 else DeviceKind.ENDOSCOPE


@dataclass
class Tally:
    """What the simulator produced, for reconciliation against storage."""

    readings: int = 0
    value_sum: float = 0.0

    def add(self, readings: Iterable[Reading]) -> None:
        """Count readings as produced."""
        for reading in readings:
            self.readings += 1
            self.value_sum += reading.value


@dataclass
class Fleet:
    """Patches and equipment stepping through simulated time tick by tick."""

    spec: FleetSpec
    patches: list[PatchModel] = field(init=False)
    equipment: list[EquipmentModel] = field(init=False)
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        # One child generator per device, patches and equipment on separate branches, keeps
        # every device's series independent of how many other devices the fleet has.
        patch_branch, equipment_branch = np.random.SeedSequence(self.spec.seed).spawn(2)
        patch_seeds = patch_branch.spawn(self.spec.patches)
        equipment_seeds = equipment_branch.spawn(self.spec.equipment)
        by_device: dict[str, list[Fault]] = {}
        for fault in self.spec.faults:
            by_device.setdefault(fault.device_id, []).append(fault)
        self.patches = [
            PatchModel(
                patch_id(i), np.random.default_rng(patch_seeds[i]), by_device.get(patch_id(i), [])
            )
            for i in range(self.spec.patches)
        ]
        self.equipment = [
            EquipmentModel(
                equipment_id(i),
                equipment_kind(i),
                np.random.default_rng(equipment_seeds[i]),
                by_device.get(equipment_id(i), []),
            )
            for i in range(self.spec.equipment)
        ]

    def time_us(self, tick: int) -> int:
        """The timestamp of a tick."""
        return self.spec.start_us + round(tick * self.spec.tick_s * 1e6)

    def patch_readings(self, tick: int) -> list[Reading]:
        """Every patch's readings at ``tick`` (tick doubles as each patch's frame counter)."""
        t_s = tick * self.spec.tick_s
        ts_us = self.time_us(tick)
        out: list[Reading] = []
        for patch in self.patches:
            if patch.silent(t_s):
                continue
            s = patch.sample(t_s)
            flags = (
                (OFF_SKIN if s.off_skin else 0)
                | (SENSOR_FAULT if s.sensor_fault else 0)
                | (LOW_BATTERY if s.battery < 15.0 else 0)
            )
            values = {
                "wound_ph": s.wound_ph,
                "wound_temp": s.wound_temp,
                "skin_temp": s.skin_temp,
                "exudate": s.exudate,
                "battery": s.battery,
                "status_flags": float(flags),
            }
            out.extend(_readings(patch.device_id, values, ts_us, tick))
        self.tally.add(out)
        return out

    def equipment_messages(self, tick: int) -> list[EquipmentMessage]:
        """Every piece of equipment's telemetry message at ``tick``."""
        t_s = tick * self.spec.tick_s
        messages = []
        for device in self.equipment:
            if device.silent(t_s):
                continue
            s = device.sample(t_s)
            metrics = {
                "mains_voltage": s.mains_voltage,
                "ng_voltage": s.ng_voltage,
                "probe_health": s.probe_health,
                "error_code": float(s.error_code),
                "usage_hours": s.usage_hours,
            }
            messages.append(
                EquipmentMessage(
                    device_id=device.device_id,
                    kind=device.kind,
                    seq=tick,
                    ts_us=self.time_us(tick),
                    metrics=metrics,
                )
            )
            self.tally.add(_readings(device.device_id, metrics, self.time_us(tick), tick))
        return messages


def _readings(device_id: str, values: dict[str, float], ts_us: int, seq: int) -> Sequence[Reading]:
    return [
        Reading(device_id, metric, value, METRICS[metric].unit, ts_us, seq)
        for metric, value in values.items()
    ]
