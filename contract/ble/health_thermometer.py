"""Temperature Measurement (0x2A1C) of the standard Health Thermometer service (0x1809).

Value: flags (u8), temperature (IEEE-11073 FLOAT), then, per the flags, a Date Time (7 bytes:
year u16, month, day, hours, minutes, seconds) and a Temperature Type (u8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, IntFlag
from typing import Final

from contract.ble.errors import BleDecodeError, BleEncodeError
from contract.ble.ieee11073 import MedValue, decode_float, encode_float, quantize, to_float


class _Flags(IntFlag):
    FAHRENHEIT = 0x01
    TIMESTAMP = 0x02
    TYPE = 0x04


class TemperatureType(IntEnum):
    """Where the temperature was taken (GATT Temperature Type)."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


@dataclass(frozen=True, slots=True)
class GattDateTime:
    """The GATT Date Time; a zero year, month or day means "not known"."""

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int

    def to_datetime(self) -> datetime | None:
        """The naive datetime (GATT carries no zone), or None when the date is not known."""
        if not (self.year and self.month and self.day):
            return None
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    """A decoded Temperature Measurement."""

    value: MedValue
    fahrenheit: bool = False
    timestamp: GattDateTime | None = None
    temperature_type: TemperatureType | None = None

    @property
    def celsius(self) -> float:
        """The temperature in °C (NaN for NaN/NRes/reserved)."""
        value = to_float(self.value)
        return (value - 32.0) * 5.0 / 9.0 if self.fahrenheit else value


_DATE_TIME = struct.Struct("<HBBBBB")
_KNOWN_FLAGS: Final = 0x07


def encode_temperature_measurement(measurement: TemperatureMeasurement) -> bytes:
    """Encode a Temperature Measurement value."""
    flags = _Flags(0)
    if measurement.fahrenheit:
        flags |= _Flags.FAHRENHEIT
    out = bytearray(encode_float(measurement.value))
    if measurement.timestamp is not None:
        flags |= _Flags.TIMESTAMP
        problem = _date_time_problem(measurement.timestamp)
        if problem:
            raise BleEncodeError(problem)
        t = measurement.timestamp
        out += _DATE_TIME.pack(t.year, t.month, t.day, t.hours, t.minutes, t.seconds)
    if measurement.temperature_type is not None:
        flags |= _Flags.TYPE
        try:
            out.append(TemperatureType(measurement.temperature_type))
        except ValueError:
            raise BleEncodeError(
                f"temperature type {measurement.temperature_type!r} is reserved"
            ) from None
    return bytes([flags]) + bytes(out)


def decode_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    """Decode a Temperature Measurement value; reserved flag bits are ignored, as GATT asks."""
    data = bytes(data)
    if not data:
        raise BleDecodeError("empty temperature measurement")
    flags = _Flags(data[0] & _KNOWN_FLAGS)
    expected = (
        5 + (_DATE_TIME.size if flags & _Flags.TIMESTAMP else 0) + (1 if flags & _Flags.TYPE else 0)
    )
    if len(data) != expected:
        raise BleDecodeError(f"temperature measurement is {len(data)} bytes, expected {expected}")
    value = decode_float(data[1:5])
    pos = 5
    timestamp = None
    if flags & _Flags.TIMESTAMP:
        timestamp = GattDateTime(*_DATE_TIME.unpack_from(data, pos))
        problem = _date_time_problem(timestamp)
        if problem:
            raise BleDecodeError(problem)
        pos += _DATE_TIME.size
    temperature_type = None
    if flags & _Flags.TYPE:
        try:
            temperature_type = TemperatureType(data[pos])
        except ValueError:
            raise BleDecodeError(f"temperature type {data[pos]} is reserved") from None
    return TemperatureMeasurement(
        value, bool(flags & _Flags.FAHRENHEIT), timestamp, temperature_type
    )


def celsius_measurement(value: float, *, exponent: int = -2) -> TemperatureMeasurement:
    """A °C measurement of ``value`` at resolution ``10**exponent``, without optional fields."""
    return TemperatureMeasurement(quantize(value, exponent))


def _date_time_problem(t: GattDateTime) -> str | None:
    if not (t.year == 0 or 1582 <= t.year <= 9999):
        return f"year {t.year} outside 1582..9999"
    if not (0 <= t.month <= 12 and 0 <= t.day <= 31):
        return f"date {t.month}/{t.day} out of range"
    if not (0 <= t.hours <= 23 and 0 <= t.minutes <= 59 and 0 <= t.seconds <= 59):
        return f"time {t.hours}:{t.minutes}:{t.seconds} out of range"
    if t.year and t.month and t.day:
        try:
            datetime(t.year, t.month, t.day)
        except ValueError:
            return f"no such date {t.year}-{t.month}-{t.day}"
    return None
