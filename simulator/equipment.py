"""Virtual hospital equipment (ultrasound, endoscope) reporting power, probe and error data."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contract import DeviceKind
from simulator.faults import Fault, FaultKind, active_fault

NOMINAL_MAINS_V = 230.0

# A few real-looking error codes; 0 means no error.
ERROR_CODES = (101, 204, 317, 512)


@dataclass(frozen=True, slots=True)
class EquipmentSample:
    """What the equipment reports at one instant."""

    t_s: float
    mains_voltage: float
    ng_voltage: float
    probe_health: float
    error_code: int
    usage_hours: float


@dataclass
class EquipmentModel:
    """Equipment with mains noise, earth quality, probe wear and occasional errors."""

    device_id: str
    kind: DeviceKind
    rng: np.random.Generator
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.usage_start_h = float(self.rng.uniform(200.0, 9000.0))
        self.base_ng = float(self.rng.uniform(0.1, 0.6))
        self.base_probe = float(self.rng.uniform(94.0, 99.5))
        self.duty_cycle = float(self.rng.uniform(0.3, 0.7))

    def _fault(self, kind: FaultKind, t_s: float) -> Fault | None:
        return active_fault(self.faults, kind, t_s)

    def silent(self, t_s: float) -> bool:
        """Whether the equipment sends nothing at ``t_s``."""
        return self._fault(FaultKind.SILENCE, t_s) is not None

    def sample(self, t_s: float) -> EquipmentSample:
        """The reported values at simulated time ``t_s``; call with increasing times."""
        noise = self.rng.normal(0.0, 1.0, 3)
        mains = NOMINAL_MAINS_V + 2.5 * noise[0]
        if self._fault(FaultKind.MAINS_SAG, t_s):
            mains = NOMINAL_MAINS_V * 0.84 + 2.0 * noise[0]  # ~193 V, below the -10 % band
        ng = abs(self.base_ng + 0.05 * noise[1])
        if self._fault(FaultKind.NG_FAULT, t_s):
            ng = 4.0 + 0.4 * abs(noise[1])
        probe = self.base_probe + 0.3 * noise[2]
        if degradation := self._fault(FaultKind.PROBE_DEGRADATION, t_s):
            probe -= 4.0 * degradation.elapsed(t_s) / 3600.0  # 4 points per hour
        error = 0
        if self._fault(FaultKind.ERROR_BURST, t_s):
            error = ERROR_CODES[int(self.rng.integers(0, len(ERROR_CODES)))]
        return EquipmentSample(
            t_s=t_s,
            mains_voltage=round(float(np.clip(mains, 0.0, 300.0)), 1),
            ng_voltage=round(float(np.clip(ng, 0.0, 50.0)), 2),
            probe_health=round(float(np.clip(probe, 0.0, 100.0)), 1),
            error_code=error,
            usage_hours=round(self.usage_start_h + self.duty_cycle * t_s / 3600.0, 3),
        )
