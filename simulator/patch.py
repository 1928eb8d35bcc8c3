"""A virtual smart-dressing patch: wound pH, temperatures, exudate and battery over time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.faults import Fault, FaultKind, active_fault

AMBIENT_C = 23.0


@dataclass(frozen=True, slots=True)
class PatchSample:
    """What the patch's sensors read at one instant."""

    t_s: float
    wound_ph: float
    wound_temp: float
    skin_temp: float
    exudate: float
    battery: float
    off_skin: bool
    sensor_fault: bool


@dataclass
class PatchModel:
    """A patch whose series follow simple physiology plus seeded noise and scripted faults."""

    device_id: str
    rng: np.random.Generator
    faults: list[Fault] = field(default_factory=list)
    dressing_change_every_s: float = 48 * 3600.0

    def __post_init__(self) -> None:
        # Healing wounds sit slightly acidic to neutral; each patient has their own baseline.
        self.base_ph = float(self.rng.uniform(6.4, 7.0))
        self.base_wound_temp = float(self.rng.uniform(32.5, 34.0))
        self.base_skin_temp = self.base_wound_temp - float(self.rng.uniform(0.3, 0.9))
        self.exudate_rate_per_h = float(self.rng.uniform(0.8, 1.6))  # % of capacity per hour
        self.battery_drain_per_h = float(self.rng.uniform(0.08, 0.15))
        self.battery_start = float(self.rng.uniform(92.0, 100.0))

    def _fault(self, kind: FaultKind, t_s: float) -> Fault | None:
        return active_fault(self.faults, kind, t_s)

    def silent(self, t_s: float) -> bool:
        """Whether the patch sends nothing at ``t_s``."""
        return self._fault(FaultKind.SILENCE, t_s) is not None

    def sample(self, t_s: float) -> PatchSample:
        """The sensor values at simulated time ``t_s``; call with increasing times."""
        noise = self.rng.normal(0.0, 1.0, 4)
        ph = self.base_ph + 0.03 * noise[0]
        wound_temp = self.base_wound_temp + 0.08 * noise[1]
        skin_temp = self.base_skin_temp + 0.08 * noise[2]
        if infection := self._fault(FaultKind.INFECTION, t_s):
            # Over ~12 h the wound turns alkaline (about +1.3 pH) and warms by ~2.5 degC.
            progress = min(1.0, infection.elapsed(t_s) / (12 * 3600.0))
            ph += 1.3 * progress
            wound_temp += 2.5 * progress
            skin_temp += 1.2 * progress

        since_change = t_s % self.dressing_change_every_s
        rate = self.exudate_rate_per_h
        if saturation := self._fault(FaultKind.SATURATION, t_s):
            rate *= 8.0
            since_change = saturation.elapsed(t_s)
        exudate = min(100.0, rate * since_change / 3600.0 + 2.0 * abs(noise[3]))

        drain = self.battery_drain_per_h
        if self._fault(FaultKind.BATTERY_DRAIN, t_s):
            drain *= 40.0
        battery = max(0.0, self.battery_start - drain * t_s / 3600.0)

        off_skin = False
        if detach := self._fault(FaultKind.DETACH, t_s):
            # Newton cooling toward ambient with a ~10 min time constant.
            decay = float(np.exp(-detach.elapsed(t_s) / 600.0))
            wound_temp = AMBIENT_C + (wound_temp - AMBIENT_C) * decay
            skin_temp = AMBIENT_C + (skin_temp - AMBIENT_C) * decay
            off_skin = detach.elapsed(t_s) > 120.0
        sensor_fault = self._fault(FaultKind.SENSOR_FAULT, t_s) is not None
        return PatchSample(
            t_s=t_s,
            wound_ph=round(float(np.clip(ph, 0.0, 14.0)), 2),
            wound_temp=round(float(wound_temp), 2),
            skin_temp=round(float(skin_temp), 2),
            exudate=round(float(np.clip(exudate, 0.0, 100.0)), 1),
            battery=round(battery, 1),
            off_skin=off_skin,
            sensor_fault=sensor_fault,
        )
