"""A virtual smart-dressing patch: wound pH, temperatures, exudate and battery over time.

One patch on one acute, healing wound (``simulator.physiology`` for the wound, ``simulator.
sensors`` for what the patch reads), plus the scripted faults of ``simulator.faults``. The
labelled cohorts of ``simulator.cohort`` use the same two models for many patients at once,
with a new patch at every dressing change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.faults import Fault, FaultKind, active_fault
from simulator.physiology import HOUR_S, NEVER, PatientParams, Physiology, WoundParams
from simulator.sensors import FAULT_PH, PatchParams, Sensors, no_patches

AMBIENT_C = 23.0
_ROW = np.zeros(1, dtype=np.intp)


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


def acute_wound(rng: np.random.Generator) -> tuple[WoundParams, PatientParams]:
    """One lower-leg wound healing normally: slightly acid to neutral pH trending down."""
    wound_temp = rng.uniform(32.5, 34.0)
    one = np.ones(1)
    wound = WoundParams(
        patient=np.zeros(1, dtype=np.int64),
        wound_temp=one * wound_temp,
        skin_temp=one * (wound_temp - rng.uniform(0.3, 0.9)),
        ph0=one * rng.uniform(6.4, 7.1),
        ph_slope=one * -rng.uniform(0.01, 0.05),
        ph_floor=one * 6.2,
        exudate_rate=one * rng.uniform(0.4, 1.2),
    )
    patient = PatientParams(
        diurnal_amp=one * rng.uniform(0.1, 0.3),
        diurnal_peak_h=one * rng.uniform(15.0, 19.0),
        posture_sd=one * rng.uniform(0.1, 0.25),
        posture_tau_s=one * 2700.0,
        fever_start=one * NEVER,
        fever_amp=one * 1.2,
        fever_rise_s=one * 3 * HOUR_S,
        fever_plateau_s=one * 24 * HOUR_S,
        fever_fall_s=one * 6 * HOUR_S,
    )
    return wound, patient


def one_patch(rng: np.random.Generator) -> PatchParams:
    """A patch applied at time 0 and never removed."""
    one = np.ones(1)
    return PatchParams(
        wound=np.zeros(1, dtype=np.int64),
        applied_s=np.zeros(1),
        removed_s=one * NEVER,
        temp_offset=one * rng.normal(0.0, 0.1),
        ph_offset=one * rng.normal(0.0, 0.08),
        ph_drift=one * rng.normal(0.0, 0.03),
        cool_c=one * rng.uniform(1.5, 3.0),
        cool_tau_s=one * rng.uniform(480.0, 900.0),
        battery_start=one * rng.uniform(92.0, 100.0),
        battery_drain=one * rng.uniform(0.08, 0.15),
        **no_patches(1),  # type: ignore[arg-type]
    )


@dataclass
class PatchModel:
    """A patch on a healing wound, with seeded noise and scripted faults.

    ``dressing_change_every_s``: the dressing (same patch id here) is changed that often: it is
    emptied and re-applied, cooling the wound bed again. None: never in the simulated span.
    """

    device_id: str
    rng: np.random.Generator
    faults: list[Fault] = field(default_factory=list)
    dressing_change_every_s: float | None = None

    def __post_init__(self) -> None:
        self.wound, self.patient = acute_wound(self.rng)
        self.params = one_patch(self.rng)
        self.battery_start = float(self.params.battery_start[0])
        self.battery_drain_per_h = float(self.params.battery_drain[0])
        self.body = Physiology(self.wound, self.patient, self.rng)
        self.sensors = Sensors(self.params, self.rng)
        self._applied: set[int] = set()
        self._changes = 0

    def _fault(self, kind: FaultKind, t_s: float) -> Fault | None:
        return active_fault(self.faults, kind, t_s)

    def silent(self, t_s: float) -> bool:
        """Whether the patch sends nothing at ``t_s``."""
        return self._fault(FaultKind.SILENCE, t_s) is not None

    def sample(self, t_s: float) -> PatchSample:
        """The sensor values at simulated time ``t_s``; call with increasing times."""
        self._script()
        self._change(t_s)
        drain = self.battery_drain_per_h
        if self._fault(FaultKind.BATTERY_DRAIN, t_s):
            drain *= 40.0
        self.params.battery_start[0] = self.battery_start
        self.params.battery_drain[0] = drain
        got = self.sensors.read(t_s, self.body.step(t_s), _ROW)
        return PatchSample(
            t_s=t_s,
            wound_ph=float(got.wound_ph[0]),
            wound_temp=float(got.wound_temp[0]),
            skin_temp=float(got.skin_temp[0]),
            exudate=float(got.exudate[0]),
            battery=round(max(0.0, self.battery_start - drain * t_s / 3600.0), 1),
            off_skin=bool(got.off_skin[0]),
            sensor_fault=bool(got.sensor_fault[0]),
        )

    def _change(self, t_s: float) -> None:
        every = self.dressing_change_every_s
        if every is None or t_s < (self._changes + 1) * every:
            return
        self._changes = int(t_s // every)
        self.sensors.fill[0] = 0.0  # a fresh dressing, re-applied: the wound bed cools again
        self.params.applied_s[0] = self._changes * every

    def _script(self) -> None:
        """Apply faults added since the last sample (the BLE backend adds detachments live)."""
        for i, fault in enumerate(self.faults):
            if i in self._applied:
                continue
            self._applied.add(i)
            apply_fault(self.wound, self.patient, self.params, fault)


def apply_fault(wound: WoundParams, patient: PatientParams, patch: PatchParams, f: Fault) -> None:
    """Write one scripted fault into the wound's, patient's and patch's parameters."""
    start = f.start_s
    if f.kind in (FaultKind.INFECTION, FaultKind.INFECTION_SLOW):
        fast = f.kind is FaultKind.INFECTION
        wound.infection_onset[0] = start
        wound.infection_tau[0] = (3.0 if fast else 24.0) * HOUR_S
        wound.infection_temp[0] = 2.5
        wound.infection_skin[0] = 1.5
        wound.infection_ph[0] = 1.0
        wound.infection_exudate[0] = 3.0
    elif f.kind is FaultKind.FEVER:
        patient.fever_start[0] = start
    elif f.kind is FaultKind.DETACH:
        patch.detach_s[0] = start
        patch.ambient_c[0] = AMBIENT_C
    elif f.kind is FaultKind.SENSOR_FAULT:
        patch.fault_s[0] = start
        patch.fault_kind[0] = FAULT_PH
        patch.fault_offset[0] = 2.0
    elif f.kind is FaultKind.SATURATION:
        patch.exudate_boost_s[0] = start
        patch.exudate_boost[0] = 20.0  # a leaking, heavily exuding wound
