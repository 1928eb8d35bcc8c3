"""Turn decoded patch frames and BTHome adverts into catalog readings."""

from __future__ import annotations

from dataclasses import dataclass

from contract.ble.bthome import BTHomeAdvert, BTHomeObject
from contract.ble.frame import PatchFlags, PatchFrame
from contract.catalog import METRICS
from contract.errors import ContractError
from contract.reading import Reading, reading_problem

# Quantities a dressing off the skin measures in air, not in the wound.
_WOUND_METRICS = frozenset({"wound_ph", "wound_temp", "skin_temp", "exudate"})


@dataclass(frozen=True, slots=True)
class PatchReadings:
    """The readings a frame or advert yields, and why any of its values were held back."""

    readings: tuple[Reading, ...]
    rejected: tuple[str, ...] = ()


def frame_readings(frame: PatchFrame, *, device_id: str, ts_us: int) -> PatchReadings:
    """Readings of one measurement frame; seq is the frame counter."""
    values: dict[str, float | None] = {
        "wound_ph": frame.wound_ph,
        "wound_temp": frame.wound_temp,
        "skin_temp": frame.skin_temp,
        "exudate": frame.exudate,
        "battery": None if frame.battery is None else float(frame.battery),
    }
    return _build(values, device_id, ts_us, frame.counter, PatchFlags.OFF_SKIN in frame.status)


def advert_readings(
    advert: BTHomeAdvert, *, device_id: str, ts_us: int, seq: int | None = None
) -> PatchReadings:
    """Readings of a BTHome advert; seq defaults to its encryption counter.

    The patch advertises battery, then wound-bed and skin temperature as two TEMPERATURE
    objects in that order, and exudate as MOISTURE; BTHome has no object for pH.
    """
    seq = advert.counter if seq is None else seq
    if seq is None:
        raise ContractError("plain adverts have no counter: pass seq")
    temps = advert.get(BTHomeObject.TEMPERATURE)
    batteries = advert.get(BTHomeObject.BATTERY)
    moisture = advert.get(BTHomeObject.MOISTURE)
    values: dict[str, float | None] = {
        "wound_temp": temps[0] if temps else None,
        "skin_temp": temps[1] if len(temps) > 1 else None,
        "exudate": moisture[0] if moisture else None,
        "battery": batteries[0] if batteries else None,
    }
    return _build(values, device_id, ts_us, seq, off_skin=False)


def _build(
    values: dict[str, float | None], device_id: str, ts_us: int, seq: int, off_skin: bool
) -> PatchReadings:
    readings: list[Reading] = []
    rejected: list[str] = []
    for metric, value in values.items():
        if value is None:
            continue
        if off_skin and metric in _WOUND_METRICS:
            rejected.append(f"{metric}: patch is off the skin")
            continue
        unit = METRICS[metric].unit
        problem = reading_problem(device_id, metric, value, unit, ts_us, seq)
        if problem:
            rejected.append(problem)
        else:
            readings.append(Reading(device_id, metric, value, unit, ts_us, seq))
    return PatchReadings(tuple(readings), tuple(rejected))
