"""What is really happening in N wounds: temperatures, pH and exudate production over time.

Vectorised over wounds and stepped forward in time (every wound at the same instants). A wound
belongs to a patient; a patient's wounds share the systemic parts: a diurnal rhythm, posture and
activity (an Ornstein-Uhlenbeck process) and fevers. Each wound adds its own site (lower leg, or
plantar, where skin sits near 28 °C), its pH course (acute wounds trend toward neutral/acid,
chronic ones stay alkaline), its exudate production and, if it gets one, an infection: an
exponential approach ``1 - exp(-(t - onset) / tau)`` to its full size (tau of a day or more for a
slow infection, hours for a fast one) in wound and periwound temperature, pH and exudate rate.

Parameters are drawn per wound by ``simulator.cohort``; every number is a modelling assumption
listed in docs/clinical-evaluation.md, not a clinical fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
HOUR_S = 3600.0
DAY_S = 86_400.0
NEVER = np.inf


@dataclass
class WoundParams:
    """Per wound (arrays of length N): who, where, and what happens to it."""

    patient: I64  # wounds of one patient share diurnal rhythm, posture and fevers
    wound_temp: F64  # °C at rest, mid-rhythm
    skin_temp: F64  # periwound skin, °C
    ph0: F64  # pH at the start
    ph_slope: F64  # pH per day (healing: negative), floored at ``ph_floor``
    ph_floor: F64
    exudate_rate: F64  # % of dressing capacity per hour
    infection_onset: F64 = field(default_factory=lambda: np.zeros(0))  # s; inf: none
    infection_tau: F64 = field(default_factory=lambda: np.zeros(0))  # s
    infection_temp: F64 = field(default_factory=lambda: np.zeros(0))  # °C at full size
    infection_skin: F64 = field(default_factory=lambda: np.zeros(0))
    infection_ph: F64 = field(default_factory=lambda: np.zeros(0))
    infection_exudate: F64 = field(default_factory=lambda: np.zeros(0))  # rate multiplier

    def __post_init__(self) -> None:
        n = len(self.patient)
        for name in ("onset", "tau", "temp", "skin", "ph", "exudate"):
            arr = getattr(self, f"infection_{name}")
            if len(arr) == 0:
                fill = {"onset": NEVER, "tau": HOUR_S, "exudate": 1.0}.get(name, 0.0)
                setattr(self, f"infection_{name}", np.full(n, fill))


@dataclass
class PatientParams:
    """Per patient (arrays of length P): rhythm, posture, fevers."""

    diurnal_amp: F64  # °C, peripheral temperatures
    diurnal_peak_h: F64  # hour of day of the peak (UTC of the simulated clock)
    posture_sd: F64  # °C, stationary spread of the posture/activity process
    posture_tau_s: F64
    fever_start: F64  # s; inf: none (one episode per patient at most)
    fever_amp: F64  # °C on peripheral temperatures at the plateau
    fever_rise_s: F64
    fever_plateau_s: F64
    fever_fall_s: F64


@dataclass
class Truth:
    """The true values of N wounds at one instant."""

    wound_temp: F64
    skin_temp: F64
    ph: F64
    exudate_rate: F64  # % per hour


def infection_progress(wounds: WoundParams, t_s: float) -> F64:
    """How far each wound's infection has come (0 before onset, toward 1)."""
    since = t_s - wounds.infection_onset
    with np.errstate(invalid="ignore", over="ignore"):
        x = 1.0 - np.exp(-np.maximum(since, 0.0) / wounds.infection_tau)
    out: F64 = np.where(since > 0, x, 0.0)
    return out


def fever_level(p: PatientParams, t_s: float) -> F64:
    """Each patient's fever on peripheral temperatures: rise, plateau, fall (trapezoid)."""
    since = t_s - p.fever_start
    rise = np.clip(since / p.fever_rise_s, 0.0, 1.0)
    fall_from = p.fever_rise_s + p.fever_plateau_s
    fall = np.clip(1.0 - (since - fall_from) / p.fever_fall_s, 0.0, 1.0)
    level: F64 = np.where(since > 0, p.fever_amp * np.minimum(rise, fall), 0.0)
    return level


class Physiology:
    """N wounds of P patients stepped forward together."""

    def __init__(self, wounds: WoundParams, patients: PatientParams, rng: np.random.Generator):
        self.wounds = wounds
        self.patients = patients
        self.rng = rng
        n_p = len(patients.diurnal_amp)
        self.posture = rng.normal(0.0, 1.0, n_p) * patients.posture_sd
        self.local = np.zeros(len(wounds.patient))  # each wound's own share of posture
        self.t_s: float | None = None

    def step(self, t_s: float) -> Truth:
        """The truth at ``t_s`` (call with increasing times)."""
        w, p = self.wounds, self.patients
        self._advance(t_s)
        hour = (t_s / HOUR_S) % 24.0
        diurnal = p.diurnal_amp * np.cos(2 * np.pi * (hour - p.diurnal_peak_h) / 24.0)
        systemic = (diurnal + 0.8 * self.posture + fever_level(p, t_s))[w.patient] + self.local
        x = infection_progress(w, t_s)
        days = t_s / DAY_S
        ph = np.maximum(w.ph0 + w.ph_slope * days, w.ph_floor) + w.infection_ph * x
        return Truth(
            wound_temp=w.wound_temp + systemic + w.infection_temp * x,
            skin_temp=w.skin_temp + systemic + w.infection_skin * x,
            ph=ph,
            exudate_rate=w.exudate_rate * (1.0 + (w.infection_exudate - 1.0) * x),
        )

    def _advance(self, t_s: float) -> None:
        """Exact Ornstein-Uhlenbeck steps of the posture processes."""
        if self.t_s is not None and t_s > self.t_s:
            p = self.patients
            dt = t_s - self.t_s
            decay = np.exp(-dt / p.posture_tau_s)
            spread = p.posture_sd * np.sqrt(1.0 - decay * decay)
            self.posture = self.posture * decay + spread * self.rng.normal(0.0, 1.0, len(decay))
            own = np.exp(-dt / p.posture_tau_s[self.wounds.patient])
            sd = 0.4 * p.posture_sd[self.wounds.patient] * np.sqrt(1.0 - own * own)
            self.local = self.local * own + sd * self.rng.normal(0.0, 1.0, len(own))
        self.t_s = t_s
