"""A labelled, seeded synthetic cohort of patients wearing patches, for evaluating alert rules.

Eight cohorts: acute healing wounds, chronic non-infected alkaline wounds, plantar (diabetic
foot) ulcers monitored with a patch on each foot, fever without infection, slow and fast
infections, detachments and sensor faults. Every patient has one wound (plantar: an ulcer and
the other foot); dressings are changed every 2-3 days and every change applies a **new patch**
(a new device id) to the same wound. Each labelled event (infection onset, fever, detachment,
sensor fault) is recorded with its time, so an evaluation can tell a detection from a false
alert. All parameters are drawn from one seed; see docs/clinical-evaluation.md for every
modelling assumption. A synthetic cohort tests the rules engine and a pack's logic against
these assumptions; it says nothing about clinical validity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulator.physiology import (
    DAY_S,
    F64,
    HOUR_S,
    I64,
    NEVER,
    PatientParams,
    Physiology,
    WoundParams,
)
from simulator.sensors import FAULT_PH, FAULT_TEMP, PatchParams, Sensors, no_patches

COHORTS = (
    "acute",
    "chronic_alkaline",
    "plantar",
    "fever",
    "slow_infection",
    "fast_infection",
    "detachment",
    "sensor_fault",
)
METRICS = ("wound_ph", "wound_temp", "skin_temp", "exudate", "battery")
EVENT = {
    "fever": "fever",
    "slow_infection": "infection",
    "fast_infection": "infection",
    "detachment": "detachment",
    "sensor_fault": "sensor_fault",
}


@dataclass(frozen=True, slots=True)
class CohortSpec:
    """How many patients per cohort, for how long, sampled how often, from which seed."""

    patients: int = 40
    days: float = 10.0
    seed: int = 11
    cadence_s: float = 120.0
    start_us: int = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    cohorts: tuple[str, ...] = COHORTS


@dataclass(frozen=True, slots=True)
class Label:
    """One wound's ground truth: its cohort and, if any, its event and when it began."""

    cohort: str
    patient: str
    wound: str
    event: str | None  # infection, fever, detachment, sensor_fault
    onset_us: int | None
    end_us: int | None  # fever end; the affected patch's removal
    patch: str | None  # the patch the event is about (detachment, sensor fault)
    devices: tuple[str, ...]  # every patch of this wound, in order


@dataclass(frozen=True, slots=True)
class Device:
    """What a registry needs to know about one patch."""

    patient: str
    wound: str
    reference_wound: str | None


@dataclass
class Chunk:
    """Readings of a span of time as columns (device indices into ``Cohort.devices``)."""

    device: NDArray[np.intp]
    metric: NDArray[np.intp]  # index into METRICS
    value: F64
    ts_us: I64
    end_us: int  # the span's end: tick the rules here


@dataclass
class _Plan:
    """Arrays being built for wounds, patients and patches."""

    wound: dict[str, list[float]] = field(default_factory=dict)
    patient: dict[str, list[float]] = field(default_factory=dict)
    patch: dict[str, list[float]] = field(default_factory=dict)

    def add(self, table: dict[str, list[float]], **values: float) -> int:
        for key, value in values.items():
            table.setdefault(key, []).append(value)
        return len(next(iter(table.values()))) - 1


class Cohort:
    """The generated cohort: devices, labels, and its readings chunk by chunk."""

    def __init__(self, spec: CohortSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.devices: list[str] = []
        self.device_info: dict[str, Device] = {}
        self.labels: list[Label] = []
        plan = _Plan()
        for cohort in spec.cohorts:
            for i in range(spec.patients):
                self._patient(plan, cohort, i)
        self.wounds = _wounds(plan)
        self.patients = _patients(plan)
        self.patches = _patches(plan)

    @property
    def patient_days(self) -> float:
        """Patient-days per cohort."""
        return self.spec.patients * self.spec.days

    def _patient(self, plan: _Plan, cohort: str, i: int) -> None:
        rng, days = self.rng, self.spec.days
        name = f"{cohort[:4]}{i:03d}"
        event = EVENT.get(cohort)
        fever = rng.uniform(*_within(days, 1.5, 3.5)) * DAY_S if cohort == "fever" else NEVER
        p = plan.add(
            plan.patient,
            diurnal_amp=rng.uniform(0.1, 0.35),
            diurnal_peak_h=rng.uniform(15.0, 19.0),
            posture_sd=rng.uniform(0.1, 0.3),
            posture_tau_s=rng.uniform(1800.0, 3600.0),
            fever_start=fever,
            fever_amp=rng.uniform(0.8, 1.6),
            fever_rise_s=rng.uniform(2.0, 4.0) * HOUR_S,
            fever_plateau_s=rng.uniform(12.0, 36.0) * HOUR_S,
            fever_fall_s=rng.uniform(4.0, 8.0) * HOUR_S,
        )
        sites = ["ulcer", "other-foot"] if cohort == "plantar" else ["wound"]
        if cohort == "detachment" and rng.random() < 0.5:
            sites = ["ulcer"]  # half the detachments on plantar skin
        for k, site in enumerate(sites):
            ref = sites[1 - k] if len(sites) == 2 else None
            kind = _kind(cohort, site, rng)
            w = self._wound(plan, p, kind, cohort if k == 0 else "none")
            self._schedule(plan, name, site, ref, w, cohort if k == 0 else "none", event, fever)

    def _wound(self, plan: _Plan, patient: int, kind: str, cohort: str) -> int:
        rng = self.rng
        plantar = kind == "plantar"
        skin = rng.uniform(27.0, 29.5) if plantar else rng.uniform(31.8, 33.8)
        ph0 = {"acute": (6.4, 7.1), "chronic": (7.6, 8.4), "plantar": (7.0, 7.8)}[kind]
        slope = {"acute": (-0.05, -0.01), "chronic": (-0.01, 0.01), "plantar": (-0.03, 0.0)}
        onset, tau = NEVER, HOUR_S
        if cohort in ("slow_infection", "fast_infection"):
            onset = rng.uniform(*_within(self.spec.days, 2.5, 3.0)) * DAY_S
            lo, hi = (18.0, 36.0) if cohort == "slow_infection" else (2.0, 5.0)
            tau = rng.uniform(lo, hi) * HOUR_S
        t_inf = rng.uniform(1.2, 2.5)
        return plan.add(
            plan.wound,
            patient=patient,
            wound_temp=skin + rng.uniform(0.3, 1.0),
            skin_temp=skin,
            ph0=rng.uniform(*ph0),
            ph_slope=rng.uniform(*slope[kind]),
            ph_floor=6.2,
            exudate_rate=rng.uniform(0.4, 1.2) if kind == "acute" else rng.uniform(0.6, 1.4),
            infection_onset=onset,
            infection_tau=tau,
            infection_temp=t_inf,
            infection_skin=t_inf * rng.uniform(0.6, 0.8),
            infection_ph=rng.uniform(0.5, 1.0),
            infection_exudate=rng.uniform(2.0, 4.0),
        )

    def _schedule(
        self,
        plan: _Plan,
        name: str,
        site: str,
        ref: str | None,
        w: int,
        cohort: str,
        event: str | None,
        fever: float,
    ) -> None:
        """Patches of one wound: a new one at every dressing change, and the wound's event."""
        rng, end = self.rng, self.spec.days * DAY_S
        ev_at = {
            "detachment": rng.uniform(1.5, self.spec.days - 1.0) * DAY_S,
            "sensor_fault": rng.uniform(1.5, self.spec.days - 1.0) * DAY_S,
        }.get(cohort, NEVER)
        onset = plan.wound["infection_onset"][w]
        devices: list[str] = []
        event_patch, event_end = None, None
        t = 0.0
        while t < end:
            change = t + rng.uniform(48.0, 72.0) * HOUR_S
            removed = min(change, end)
            hit = t <= ev_at < removed
            if hit:  # a nurse responds: the dressing is replaced
                removed = ev_at + rng.uniform(1.0, 3.0 if event == "detachment" else 8.0) * HOUR_S
                removed = min(removed, end)
            device = f"{name}-{site}-{len(devices) + 1}"
            devices.append(device)
            self.devices.append(device)
            self.device_info[device] = Device(name, site, ref)
            self._patch(plan, w, t, removed, ev_at if hit else NEVER, event)
            if hit:
                event_patch, event_end = device, removed
            t = removed + rng.uniform(8.0, 20.0) * 60.0
        start = self.spec.start_us
        at = {"infection": onset, "fever": fever}.get(event or "", ev_at)
        fever_end = fever + sum(plan.patient[k][-1] for k in _FEVER_SPANS)
        finish = {"fever": fever_end, "infection": None}.get(event or "", event_end)
        real = cohort != "none" and event is not None
        self.labels.append(
            Label(
                cohort=cohort if cohort != "none" else "plantar",
                patient=name,
                wound=site,
                event=event if real else None,
                onset_us=start + round(at * 1e6) if real else None,
                end_us=start + round(finish * 1e6) if real and finish is not None else None,
                patch=event_patch,
                devices=tuple(devices),
            )
        )

    def _patch(
        self, plan: _Plan, w: int, applied: float, removed: float, ev_at: float, event: str | None
    ) -> None:
        rng = self.rng
        fault = FAULT_PH if rng.random() < 0.5 else FAULT_TEMP
        plan.add(
            plan.patch,
            wound=w,
            applied_s=applied,
            removed_s=removed,
            temp_offset=rng.normal(0.0, 0.1),
            ph_offset=rng.normal(0.0, 0.08),
            ph_drift=rng.normal(0.0, 0.03),
            cool_c=rng.uniform(1.5, 3.0),
            cool_tau_s=rng.uniform(480.0, 900.0),
            battery_start=rng.uniform(90.0, 100.0),
            battery_drain=rng.uniform(0.08, 0.15),
            detach_s=ev_at if event == "detachment" else NEVER,
            ambient_c=rng.uniform(20.0, 24.0),
            detach_tau_s=rng.uniform(300.0, 720.0),
            fault_s=ev_at if event == "sensor_fault" else NEVER,
            fault_kind=fault if event == "sensor_fault" else 0,
            fault_offset=rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 3.0),
            exudate_boost_s=NEVER,
            exudate_boost=1.0,
        )

    def chunks(self, span_s: float = HOUR_S) -> Iterator[Chunk]:
        """The cohort's readings, ``span_s`` of simulated time per chunk, in time order."""
        spec = self.spec
        body = Physiology(self.wounds, self.patients, np.random.default_rng(spec.seed + 1))
        sensors = Sensors(self.patches, np.random.default_rng(spec.seed + 2))
        applied, removed = self.patches.applied_s, self.patches.removed_s
        per = max(1, round(span_s / spec.cadence_s))
        ticks = int(spec.days * DAY_S / spec.cadence_s)
        parts: list[tuple[NDArray[np.intp], F64, int]] = []
        for k in range(ticks):
            t = k * spec.cadence_s
            rows = np.flatnonzero((applied <= t) & (t < removed))
            got = sensors.read(t, body.step(t), rows)
            values = np.stack([getattr(got, m) for m in METRICS])
            parts.append((rows, values, spec.start_us + round(t * 1e6)))
            if len(parts) == per or k == ticks - 1:
                yield _chunk(parts, spec.start_us + round((t + spec.cadence_s) * 1e6))
                parts = []


_FEVER_SPANS = ("fever_rise_s", "fever_plateau_s", "fever_fall_s")


def _within(days: float, after: float, before_end: float) -> tuple[float, float]:
    """Days from ``after`` to ``before_end`` before the end, shrunk to fit short runs."""
    lo = min(after, 0.4 * days)
    return lo, max(lo + 0.25, days - before_end)


def _kind(cohort: str, site: str, rng: np.random.Generator) -> str:
    """Which wound model: acute (lower leg), chronic (alkaline) or plantar."""
    if cohort == "plantar" or site in ("ulcer", "other-foot"):
        return "plantar"
    if cohort == "chronic_alkaline":
        return "chronic"
    if cohort in ("slow_infection", "fast_infection", "sensor_fault"):
        return "chronic" if rng.random() < 0.5 else "acute"
    return "acute"


def _chunk(parts: list[tuple[NDArray[np.intp], F64, int]], end_us: int) -> Chunk:
    """Columns of several ticks: patch index, metric index, value, timestamp."""
    n_metrics = len(METRICS)
    device = np.concatenate([np.tile(rows, n_metrics) for rows, _, _ in parts])
    metric = np.concatenate(
        [np.repeat(np.arange(n_metrics), len(rows)) for rows, _, _ in parts]
    ).astype(np.intp)
    value = np.concatenate([values.reshape(-1) for _, values, _ in parts])
    ts = np.concatenate([np.full(len(rows) * n_metrics, t, dtype=np.int64) for rows, _, t in parts])
    return Chunk(device.astype(np.intp), metric, value, ts, end_us)


def _arrays(table: dict[str, list[float]], ints: tuple[str, ...]) -> dict[str, Any]:
    return {k: np.array(v, dtype=np.int64 if k in ints else np.float64) for k, v in table.items()}


def _wounds(plan: _Plan) -> WoundParams:
    return WoundParams(**_arrays(plan.wound, ("patient",)))


def _patients(plan: _Plan) -> PatientParams:
    return PatientParams(**_arrays(plan.patient, ()))


def _patches(plan: _Plan) -> PatchParams:
    arrays = _arrays(plan.patch, ("wound", "fault_kind"))
    defaults: dict[str, Any] = no_patches(len(arrays["wound"]))
    return PatchParams(**{**defaults, **arrays})
