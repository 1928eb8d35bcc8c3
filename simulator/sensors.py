"""What M patches read from their wounds: noise, calibration, re-warming, detachment, faults.

Each patch is applied to one wound at ``applied_s`` and removed at ``removed_s`` (a dressing
change applies a new patch). Its readings are the wound's truth plus:

* sensor noise: temperature σ 0.08 °C, pH σ 0.25 (the repeatability reported for wound pH
  sensors), exudate σ 1.5 % — and a per-patch calibration offset and pH drift per day;
* cooling at application (the dressing change exposed the wound bed), re-warming with a time
  constant of minutes (McGuiness 2004: the wound bed fell about 2 °C; the dressing surface was
  back within 30 min);
* exudate: the dressing fills at the wound's production rate from empty at application;
* detachment: both temperatures fall toward room temperature (Newton cooling), the pH electrode
  dries and wanders, the dressing stops absorbing;
* sensor faults: an erratic, offset pH electrode, or an open thermistor reading about 5 °C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulator.physiology import F64, I64, NEVER, Truth

Idx = NDArray[np.intp]
FAULT_NONE, FAULT_PH, FAULT_TEMP = 0, 1, 2
TEMP_SD, PH_SD, EXUDATE_SD = 0.08, 0.25, 1.5


@dataclass
class PatchParams:
    """Per patch (arrays of length M)."""

    wound: I64
    applied_s: F64
    removed_s: F64
    temp_offset: F64
    ph_offset: F64
    ph_drift: F64  # pH per day
    cool_c: F64  # cooling at application, °C
    cool_tau_s: F64
    battery_start: F64
    battery_drain: F64  # % per hour
    detach_s: F64  # inf: stays on
    ambient_c: F64
    detach_tau_s: F64
    fault_s: F64  # inf: no fault
    fault_kind: I64
    fault_offset: F64  # pH units (pH faults)
    exudate_boost_s: F64  # inf: none; from then the dressing fills ``exudate_boost`` × faster
    exudate_boost: F64


@dataclass
class Readings:
    """What the selected patches report at one instant (arrays aligned with ``rows``)."""

    rows: Idx
    wound_ph: F64
    wound_temp: F64
    skin_temp: F64
    exudate: F64
    battery: F64
    off_skin: NDArray[np.bool_]
    sensor_fault: NDArray[np.bool_]


class Sensors:
    """M patches; ``read`` integrates their exudate and adds sensor effects."""

    def __init__(self, patches: PatchParams, rng: np.random.Generator) -> None:
        self.p = patches
        self.rng = rng
        m = len(patches.wound)
        self.fill = np.zeros(m)
        self.last = patches.applied_s.copy()
        self.air_ph = np.zeros(m)  # a detached electrode's wandering

    def read(self, t_s: float, truth: Truth, rows: Idx) -> Readings:
        """Readings at ``t_s`` of patches ``rows`` (on their wounds, in time order)."""
        p = self.p
        w = p.wound[rows]
        since = t_s - p.applied_s[rows]
        detached = t_s >= p.detach_s[rows]
        self._fill(t_s, truth, rows, w, detached)
        cool = p.cool_c[rows] * np.exp(-np.maximum(since, 0.0) / p.cool_tau_s[rows])
        noise = self.rng.normal(0.0, 1.0, (4, len(rows)))
        wound_t: F64 = truth.wound_temp[w] - cool + p.temp_offset[rows]
        skin_t = truth.skin_temp[w] - cool + p.temp_offset[rows]
        off = t_s - p.detach_s[rows]
        decay = np.exp(-np.maximum(off, 0.0) / p.detach_tau_s[rows])
        amb = p.ambient_c[rows]
        wound_t = np.where(detached, amb + (wound_t - amb) * decay, wound_t)
        skin_t = np.where(detached, amb + (skin_t - amb) * decay, skin_t)
        ph = truth.ph[w] + p.ph_offset[rows] + p.ph_drift[rows] * since / 86_400.0
        self.air_ph[rows] += np.where(detached, 0.05 * noise[3], 0.0)
        ph += np.where(detached, self.air_ph[rows], 0.0)
        faulty = t_s >= p.fault_s[rows]
        kind = np.where(faulty, p.fault_kind[rows], FAULT_NONE)
        ph_sd = np.where(kind == FAULT_PH, 0.8, np.where(detached, 0.6, PH_SD))
        ph = ph + ph_sd * noise[0] + np.where(kind == FAULT_PH, p.fault_offset[rows], 0.0)
        wound_t = np.where(kind == FAULT_TEMP, 5.0, wound_t + TEMP_SD * noise[1]).astype(np.float64)
        skin_t = skin_t + TEMP_SD * noise[2]
        exudate = self.fill[rows] + EXUDATE_SD * np.abs(noise[3])
        battery: F64 = (
            p.battery_start[rows] - p.battery_drain[rows] * np.maximum(since, 0.0) / 3600.0
        )
        return Readings(
            rows=rows,
            wound_ph=_reported(ph, 14.0, 2),
            wound_temp=_reported(wound_t, 50.0, 2),
            skin_temp=_reported(skin_t, 50.0, 2),
            exudate=_reported(exudate, 100.0, 1),
            battery=_reported(battery, 100.0, 1),
            off_skin=off > 120.0,
            sensor_fault=kind != FAULT_NONE,
        )

    def _fill(
        self, t_s: float, truth: Truth, rows: Idx, w: I64, detached: NDArray[np.bool_]
    ) -> None:
        """The dressing absorbs what the wound produces while it is on."""
        p = self.p
        dt_h = np.maximum(t_s - self.last[rows], 0.0) / 3600.0
        boost = np.where(t_s >= p.exudate_boost_s[rows], p.exudate_boost[rows], 1.0)
        rate = np.where(detached, 0.0, truth.exudate_rate[w] * boost)
        self.fill[rows] = np.minimum(100.0, self.fill[rows] + rate * dt_h)
        self.last[rows] = t_s


def _reported(x: F64, high: float, digits: int) -> F64:
    """As the patch reports it: within its range, at its resolution."""
    out: F64 = np.round(np.clip(x, 0.0, high), digits).astype(np.float64)
    return out


def no_patches(m: int) -> dict[str, F64 | I64]:
    """Defaults for optional per-patch fields: nothing goes wrong."""
    return {
        "detach_s": np.full(m, NEVER),
        "ambient_c": np.full(m, 23.0),
        "detach_tau_s": np.full(m, 600.0),
        "fault_s": np.full(m, NEVER),
        "fault_kind": np.zeros(m, dtype=np.int64),
        "fault_offset": np.zeros(m),
        "exudate_boost_s": np.full(m, NEVER),
        "exudate_boost": np.ones(m),
    }
