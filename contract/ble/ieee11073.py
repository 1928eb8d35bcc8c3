"""IEEE 11073-20601 medical number formats: 32-bit FLOAT and 16-bit SFLOAT, little-endian.

FLOAT is a signed 24-bit mantissa with a signed 8-bit base-10 exponent; SFLOAT a signed 12-bit
mantissa with a signed 4-bit exponent. The mantissas nearest the ends of their range are special
values, which are only defined with exponent 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum

from contract.ble.errors import BleDecodeError, BleEncodeError


class Special(Enum):
    """The special (non-numeric) values both formats reserve."""

    NAN = "NaN"
    NRES = "NRes"  # not at this resolution
    POSITIVE_INFINITY = "+INFINITY"
    NEGATIVE_INFINITY = "-INFINITY"
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class MedFloat:
    """An exact number ``mantissa * 10**exponent`` as carried on the wire, not normalised."""

    mantissa: int
    exponent: int

    def __float__(self) -> float:
        # Integer division keeps 3706e-2 == 37.06 exactly as Python would parse "37.06".
        scale: int = 10 ** abs(self.exponent)
        if self.exponent >= 0:
            return float(self.mantissa * scale)  # at most ~8.4e133: fits a double
        return self.mantissa / scale


MedValue = MedFloat | Special


@dataclass(frozen=True, slots=True)
class _Format:
    name: str
    size: int
    mantissa_bits: int
    exponent_bits: int

    @property
    def half(self) -> int:
        return 1 << (self.mantissa_bits - 1)

    @property
    def max_mantissa(self) -> int:
        # The top three positive codes are NaN, +INF and the unused; -(half-2).. are specials too.
        return self.half - 3

    @property
    def exponent_range(self) -> tuple[int, int]:
        e_half = 1 << (self.exponent_bits - 1)
        return -e_half, e_half - 1

    def specials(self) -> dict[int, Special]:
        """Special values keyed by their signed mantissa."""
        h = self.half
        return {
            h - 1: Special.NAN,
            -h: Special.NRES,
            h - 2: Special.POSITIVE_INFINITY,
            -(h - 2): Special.NEGATIVE_INFINITY,
            -(h - 1): Special.RESERVED,
        }


_FLOAT = _Format("FLOAT", 4, 24, 8)
_SFLOAT = _Format("SFLOAT", 2, 12, 4)


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _decode(fmt: _Format, data: bytes) -> MedValue:
    if len(data) != fmt.size:
        raise BleDecodeError(f"{fmt.name}: {len(data)} bytes, expected {fmt.size}")
    raw = int.from_bytes(data, "little")
    mantissa = _signed(raw & ((1 << fmt.mantissa_bits) - 1), fmt.mantissa_bits)
    exponent = _signed(raw >> fmt.mantissa_bits, fmt.exponent_bits)
    special = fmt.specials().get(mantissa)
    if special is None:
        return MedFloat(mantissa, exponent)
    if exponent != 0:
        raise BleDecodeError(f"{fmt.name}: special mantissa {mantissa} with exponent {exponent}")
    return special


def _encode(fmt: _Format, value: MedValue) -> bytes:
    if isinstance(value, Special):
        mantissa = next(m for m, s in fmt.specials().items() if s is value)
        exponent = 0
    else:
        mantissa, exponent = value.mantissa, value.exponent
        if abs(mantissa) > fmt.max_mantissa:
            raise BleEncodeError(f"{fmt.name}: mantissa {mantissa} out of range")
        low, high = fmt.exponent_range
        if not low <= exponent <= high:
            raise BleEncodeError(f"{fmt.name}: exponent {exponent} out of range")
    m_mask = (1 << fmt.mantissa_bits) - 1
    e_mask = (1 << fmt.exponent_bits) - 1
    raw = (mantissa & m_mask) | ((exponent & e_mask) << fmt.mantissa_bits)
    return raw.to_bytes(fmt.size, "little")


def decode_float(data: bytes) -> MedValue:
    """Decode a 4-byte IEEE-11073 FLOAT."""
    return _decode(_FLOAT, data)


def encode_float(value: MedValue) -> bytes:
    """Encode an IEEE-11073 FLOAT (4 bytes)."""
    return _encode(_FLOAT, value)


def decode_sfloat(data: bytes) -> MedValue:
    """Decode a 2-byte IEEE-11073 SFLOAT."""
    return _decode(_SFLOAT, data)


def encode_sfloat(value: MedValue) -> bytes:
    """Encode an IEEE-11073 SFLOAT (2 bytes)."""
    return _encode(_SFLOAT, value)


def to_float(value: MedValue) -> float:
    """The value as a Python float: NaN for NaN, NRes and reserved; infinities as such."""
    if isinstance(value, MedFloat):
        return float(value)
    if value is Special.POSITIVE_INFINITY:
        return math.inf
    if value is Special.NEGATIVE_INFINITY:
        return -math.inf
    return math.nan


def quantize(value: float, exponent: int) -> MedValue:
    """``value`` rounded to ``10**exponent``; non-finite floats map to their special value."""
    if math.isnan(value):
        return Special.NAN
    if math.isinf(value):
        return Special.POSITIVE_INFINITY if value > 0 else Special.NEGATIVE_INFINITY
    try:
        # Decimal of the float's repr rounds as a person would (36.85 at -1 gives 36.9).
        scaled = Decimal(repr(value)).scaleb(-exponent).to_integral_value(rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise BleEncodeError(f"cannot quantise {value!r} to 1e{exponent}") from None
    return MedFloat(int(scaled), exponent)
