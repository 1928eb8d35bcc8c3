"""The patch measurement frame: what the vigil measurement characteristic notifies.

Layout (version 1, little-endian, 23 bytes; see docs/ble-profile.md)::

    0  u8   version (1)             \\
    1  u8   frame flags              > header: sent in clear, authenticated as AAD
    2  u32  counter                 /
    6  u16  wound pH, 0.01 pH        \\
    8  s16  wound-bed temp, 0.01 °C   |
    10 s16  skin temp, 0.01 °C        > body: AES-128-CCM encrypted
    12 u8   exudate, 0.5 %            |
    13 u8   battery, 1 %              |
    14 u8   status flags             /
    15 8B   MIC

Nonce (13 bytes): device address (6, display order) || 7a 1e || version || counter (u32 LE).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag
from typing import Final

from contract.ble._ccm import open_sealed, seal
from contract.ble._fixed import from_fixed, to_fixed
from contract.ble.address import ADDRESS_LEN
from contract.ble.errors import BleDecodeError, BleEncodeError

FRAME_VERSION: Final = 1
FRAME_LEN: Final = 23
TAG_LEN: Final = 8
NONCE_TAG: Final = b"\x7a\x1e"  # separates our nonces from BTHome's (d2 fc) under one key
COUNTER_MAX: Final = 0xFFFF_FFFF

_HEADER = struct.Struct("<BBI")
_BODY = struct.Struct("<HhhBBB")

# "Not available" codes: the patch sends these for a quantity it cannot vouch for.
PH_NA: Final = 0xFFFF
TEMP_NA: Final = -0x8000
EXUDATE_NA: Final = 0xFF
BATTERY_NA: Final = 0xFF

PH_SCALE, TEMP_SCALE, EXUDATE_SCALE = 100, 100, 2
PH_MAX_RAW, EXUDATE_MAX_RAW, BATTERY_MAX = 1400, 200, 100


class FrameFlags(IntFlag):
    """Header flags: how to interpret the frame as a whole."""

    BACKFILL = 0x01  # read from the patch's store-and-forward log, not measured just now


class PatchFlags(IntFlag):
    """Status flags the patch reports with every measurement."""

    OFF_SKIN = 0x01
    SENSOR_FAULT = 0x02  # the faulty quantities are also sent as "not available"
    LOW_BATTERY = 0x04
    SATURATED = 0x08  # exudate capacity reached: the dressing needs changing
    REBOOTED = 0x10  # first frame since power-on or reset
    CALIBRATION_EXPIRED = 0x20  # pH electrode past its calibration life
    LOG_OVERRUN = 0x40  # the store-and-forward log overwrote unsent frames: expect a gap


_FRAME_FLAGS_ALL: Final = int(FrameFlags.BACKFILL)
_NO_STATUS: Final = PatchFlags(0)
_NO_FRAME_FLAGS: Final = FrameFlags(0)
_PATCH_FLAGS_ALL: Final = 0x7F


@dataclass(frozen=True, slots=True)
class PatchFrame:
    """One decoded measurement; None means the patch reported the quantity as not available."""

    counter: int
    wound_ph: float | None  # pH
    wound_temp: float | None  # °C
    skin_temp: float | None  # °C
    exudate: float | None  # % of capacity, 0.5 % resolution
    battery: int | None  # % state of charge
    status: PatchFlags = _NO_STATUS
    frame_flags: FrameFlags = _NO_FRAME_FLAGS


def frame_nonce(device_address: bytes, counter: int) -> bytes:
    """The 13-byte AES-CCM nonce of the frame with ``counter`` from ``device_address``."""
    count = counter.to_bytes(4, "little")
    return bytes(device_address) + NONCE_TAG + bytes([FRAME_VERSION]) + count


def encode_patch_frame(frame: PatchFrame, key: bytes, device_address: bytes) -> bytes:
    """Build the authenticated, encrypted frame the patch notifies."""
    if len(device_address) != ADDRESS_LEN:
        raise BleEncodeError(f"device address is {len(device_address)} bytes, expected 6")
    if not 0 <= frame.counter <= COUNTER_MAX:
        raise BleEncodeError(f"counter {frame.counter} is not a uint32")
    if int(frame.frame_flags) & ~_FRAME_FLAGS_ALL or int(frame.status) & ~_PATCH_FLAGS_ALL:
        raise BleEncodeError("undefined flag bits set")
    header = _HEADER.pack(FRAME_VERSION, int(frame.frame_flags), frame.counter)
    body = _BODY.pack(
        PH_NA
        if frame.wound_ph is None
        else to_fixed(frame.wound_ph, PH_SCALE, 0, PH_MAX_RAW, "wound_ph"),
        _encode_temp(frame.wound_temp, "wound_temp"),
        _encode_temp(frame.skin_temp, "skin_temp"),
        EXUDATE_NA
        if frame.exudate is None
        else to_fixed(frame.exudate, EXUDATE_SCALE, 0, EXUDATE_MAX_RAW, "exudate"),
        BATTERY_NA
        if frame.battery is None
        else to_fixed(frame.battery, 1, 0, BATTERY_MAX, "battery"),
        int(frame.status),
    )
    nonce = frame_nonce(device_address, frame.counter)
    return header + seal(key, nonce, body, header, TAG_LEN)


def decode_patch_frame(data: bytes, key: bytes, device_address: bytes) -> PatchFrame:
    """Authenticate, decrypt and parse a frame; BleAuthError if it fails authentication."""
    if len(device_address) != ADDRESS_LEN:
        raise BleDecodeError(f"device address is {len(device_address)} bytes, expected 6")
    if len(data) != FRAME_LEN:
        raise BleDecodeError(f"frame is {len(data)} bytes, expected {FRAME_LEN}")
    data = bytes(data)
    version, flags, counter = _HEADER.unpack_from(data)
    if version != FRAME_VERSION:
        raise BleDecodeError(f"unsupported frame version {version}")
    if flags & ~_FRAME_FLAGS_ALL:
        raise BleDecodeError(f"undefined frame flag bits 0x{flags:02x}")
    header = data[: _HEADER.size]
    body = open_sealed(
        key, frame_nonce(device_address, counter), data[_HEADER.size :], header, TAG_LEN
    )
    ph, wound, skin, exudate, battery, status = _BODY.unpack(body)
    # An authentic frame can still be out of range: a firmware bug, not something to store.
    if ph != PH_NA and ph > PH_MAX_RAW:
        raise BleDecodeError(f"wound pH code {ph} above {PH_MAX_RAW}")
    if exudate != EXUDATE_NA and exudate > EXUDATE_MAX_RAW:
        raise BleDecodeError(f"exudate code {exudate} above {EXUDATE_MAX_RAW}")
    if battery != BATTERY_NA and battery > BATTERY_MAX:
        raise BleDecodeError(f"battery {battery} % above {BATTERY_MAX}")
    if status & ~_PATCH_FLAGS_ALL:
        raise BleDecodeError(f"undefined status bits 0x{status:02x}")
    return PatchFrame(
        counter=counter,
        wound_ph=None if ph == PH_NA else from_fixed(ph, PH_SCALE),
        wound_temp=None if wound == TEMP_NA else from_fixed(wound, TEMP_SCALE),
        skin_temp=None if skin == TEMP_NA else from_fixed(skin, TEMP_SCALE),
        exudate=None if exudate == EXUDATE_NA else from_fixed(exudate, EXUDATE_SCALE),
        battery=None if battery == BATTERY_NA else battery,
        status=PatchFlags(status),
        frame_flags=FrameFlags(flags),
    )


def _encode_temp(value: float | None, what: str) -> int:
    if value is None:
        return TEMP_NA
    return to_fixed(value, TEMP_SCALE, TEMP_NA + 1, 0x7FFF, what)
