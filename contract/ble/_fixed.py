"""Fixed-point helpers shared by the codecs: floats to scaled integers and back."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from contract.ble.errors import BleEncodeError


def to_fixed(value: float, scale: int, low: int, high: int, what: str) -> int:
    """``value * scale`` rounded half away from zero; BleEncodeError outside ``[low, high]``."""
    if not math.isfinite(value):
        raise BleEncodeError(f"{what}: {value!r} is not finite")
    # Decimal of repr() rounds what the caller wrote (7.005 pH -> 701), not its binary neighbour.
    raw = int((Decimal(repr(float(value))) * scale).to_integral_value(rounding=ROUND_HALF_UP))
    if not low <= raw <= high:
        raise BleEncodeError(f"{what}: {value!r} outside [{low / scale}, {high / scale}]")
    return raw


def from_fixed(raw: int, scale: int) -> float:
    """The float a scaled integer stands for; division keeps 3706/100 == 37.06 exactly."""
    return raw / scale
