"""BTHome v2 service data (UUID 0xFCD2): the patch's passive, connectionless advertising mode.

Service data = device-info byte, [MAC reversed, if bit 1], then either the objects in clear or,
when bit 0 is set, AES-CCM ciphertext || counter (u32 LE) || 4-byte MIC. The nonce is
MAC (6, display order) || d2 fc || device-info byte || counter (u32 LE), with no associated data,
exactly as BTHome v2 specifies. Each object is an id byte and a fixed-length little-endian value;
an unknown id makes the rest unparseable, so it is a decode error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Final

from contract.ble._ccm import open_sealed, seal
from contract.ble._fixed import from_fixed, to_fixed
from contract.ble.address import ADDRESS_LEN
from contract.ble.errors import BleAuthError, BleDecodeError, BleEncodeError

BTHOME_VERSION: Final = 2
MIC_LEN: Final = 4
COUNTER_LEN: Final = 4
_UUID16_LE: Final = b"\xd2\xfc"


class DeviceInfo(IntFlag):
    """Bits of the BTHome v2 device-info byte below the version field (bits 5-7)."""

    ENCRYPTED = 0x01
    MAC_INCLUDED = 0x02
    TRIGGER_BASED = 0x04  # sends on events rather than at a fixed interval


class BTHomeObject(IntEnum):
    """The BTHome v2 object ids vigil understands; the names follow bthome.io."""

    PACKET_ID = 0x00
    BATTERY = 0x01
    TEMPERATURE = 0x02
    HUMIDITY = 0x03
    VOLTAGE = 0x0C
    MOISTURE = 0x14
    HUMIDITY_COARSE = 0x2E
    MOISTURE_COARSE = 0x2F
    TEMPERATURE_COARSE = 0x45


@dataclass(frozen=True, slots=True)
class _Spec:
    length: int
    signed: bool
    scale: int  # value = raw / scale


_SPECS: Final[dict[BTHomeObject, _Spec]] = {
    BTHomeObject.PACKET_ID: _Spec(1, False, 1),
    BTHomeObject.BATTERY: _Spec(1, False, 1),  # %
    BTHomeObject.TEMPERATURE: _Spec(2, True, 100),  # °C
    BTHomeObject.HUMIDITY: _Spec(2, False, 100),  # %
    BTHomeObject.VOLTAGE: _Spec(2, False, 1000),  # V
    BTHomeObject.MOISTURE: _Spec(2, False, 100),  # %
    BTHomeObject.HUMIDITY_COARSE: _Spec(1, False, 1),  # %
    BTHomeObject.MOISTURE_COARSE: _Spec(1, False, 1),  # %
    BTHomeObject.TEMPERATURE_COARSE: _Spec(2, True, 10),  # °C
}


@dataclass(frozen=True, slots=True)
class BTHomeValue:
    """One BTHome object: its id and its value in the object's unit."""

    object_id: BTHomeObject
    value: float


@dataclass(frozen=True, slots=True)
class BTHomeAdvert:
    """A decoded BTHome v2 advertisement."""

    values: tuple[BTHomeValue, ...]
    encrypted: bool
    counter: int | None  # the AES-CCM counter; None for plain adverts
    trigger_based: bool = False
    mac: bytes | None = None  # the MAC the advert itself carries, display order

    @property
    def packet_id(self) -> int | None:
        """The packet id object, which plain adverts use to drop duplicates, if present."""
        found = self.get(BTHomeObject.PACKET_ID)
        return int(found[0]) if found else None

    def get(self, object_id: BTHomeObject) -> tuple[float, ...]:
        """Every value of ``object_id``, in advert order (BTHome allows repeats)."""
        return tuple(v.value for v in self.values if v.object_id == object_id)


def encode_bthome_adv(
    values: Sequence[BTHomeValue],
    *,
    mac: bytes | None = None,
    key: bytes | None = None,
    counter: int | None = None,
    trigger_based: bool = False,
    include_mac: bool = False,
) -> bytes:
    """Service data for UUID 0xFCD2; encrypted when ``key`` is given (then ``mac`` and
    ``counter`` are required). Objects are stably sorted by id, as BTHome asks."""
    if (key is not None or include_mac) and (mac is None or len(mac) != ADDRESS_LEN):
        raise BleEncodeError("a 6-byte MAC is required to encrypt or include it")
    if key is None and counter is not None:
        raise BleEncodeError("plain BTHome has no counter: send a PACKET_ID object instead")
    info = DeviceInfo(0)
    if key is not None:
        info |= DeviceInfo.ENCRYPTED
    if include_mac:
        info |= DeviceInfo.MAC_INCLUDED
    if trigger_based:
        info |= DeviceInfo.TRIGGER_BASED
    info_byte = int(info) | (BTHOME_VERSION << 5)
    objects = b"".join(_encode_object(v) for v in sorted(values, key=lambda v: v.object_id))
    head = bytes([info_byte]) + (bytes(reversed(mac)) if include_mac and mac else b"")
    if key is None:
        return head + objects
    if mac is None or counter is None or not 0 <= counter <= 0xFFFF_FFFF:
        raise BleEncodeError(f"encrypted adverts need a uint32 counter, not {counter!r}")
    count = counter.to_bytes(COUNTER_LEN, "little")
    sealed = seal(key, _nonce(mac, info_byte, count), objects, None, MIC_LEN)
    return head + sealed[:-MIC_LEN] + count + sealed[-MIC_LEN:]


def decode_bthome_adv(
    service_data: bytes, *, mac: bytes | None = None, key: bytes | None = None
) -> BTHomeAdvert:
    """Parse (and, with ``key``, authenticate) the service data of UUID 0xFCD2.

    ``mac`` is the sender's address, needed to decrypt unless the advert carries its own. With a
    ``key`` a plain advert is rejected as a downgrade (BleAuthError).
    """
    data = bytes(service_data)
    if not data:
        raise BleDecodeError("empty BTHome service data")
    info_byte = data[0]
    if info_byte >> 5 != BTHOME_VERSION:
        raise BleDecodeError(f"BTHome version {info_byte >> 5}, expected {BTHOME_VERSION}")
    info = DeviceInfo(info_byte & 0x07)
    rest = data[1:]
    carried: bytes | None = None
    if info & DeviceInfo.MAC_INCLUDED:
        if len(rest) < ADDRESS_LEN:
            raise BleDecodeError("BTHome advert too short for its MAC")
        carried, rest = bytes(reversed(rest[:ADDRESS_LEN])), rest[ADDRESS_LEN:]
    counter: int | None = None
    if info & DeviceInfo.ENCRYPTED:
        if key is None:
            raise BleAuthError("encrypted BTHome advert and no key for this device")
        nonce_mac = carried if carried is not None else mac
        if nonce_mac is None or len(nonce_mac) != ADDRESS_LEN:
            raise BleDecodeError("a 6-byte MAC is needed to decrypt this advert")
        if len(rest) < COUNTER_LEN + MIC_LEN:
            raise BleDecodeError("encrypted BTHome advert too short")
        ciphertext, count, mic = rest[:-8], rest[-8:-MIC_LEN], rest[-MIC_LEN:]
        rest = open_sealed(
            key, _nonce(nonce_mac, info_byte, count), ciphertext + mic, None, MIC_LEN
        )
        counter = int.from_bytes(count, "little")
    elif key is not None:
        raise BleAuthError("plain BTHome advert from a device that has a key: downgrade")
    return BTHomeAdvert(
        values=_decode_objects(rest),
        encrypted=counter is not None,
        counter=counter,
        trigger_based=bool(info & DeviceInfo.TRIGGER_BASED),
        mac=carried,
    )


def bthome_ad_structure(service_data: bytes) -> bytes:
    """Wrap service data as the advertising-data element (length, 0x16, d2 fc, data)."""
    if len(service_data) > 27:  # a legacy advert is 31 bytes; 3 go to Flags, 4 to this header
        raise BleEncodeError(f"{len(service_data)} bytes of service data exceed 27")
    return bytes([len(service_data) + 3, 0x16]) + _UUID16_LE + service_data


def _nonce(mac: bytes, info_byte: int, count: bytes) -> bytes:
    return bytes(mac) + _UUID16_LE + bytes([info_byte]) + count


def _encode_object(item: BTHomeValue) -> bytes:
    try:
        object_id = BTHomeObject(item.object_id)
    except ValueError:
        raise BleEncodeError(f"unknown BTHome object id {item.object_id!r}") from None
    spec = _SPECS[object_id]
    bits = 8 * spec.length
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if spec.signed else (0, (1 << bits) - 1)
    raw = to_fixed(item.value, spec.scale, low, high, object_id.name.lower())
    return bytes([object_id]) + raw.to_bytes(spec.length, "little", signed=spec.signed)


def _decode_objects(payload: bytes) -> tuple[BTHomeValue, ...]:
    values: list[BTHomeValue] = []
    pos = 0
    while pos < len(payload):
        try:
            object_id = BTHomeObject(payload[pos])
        except ValueError:
            raise BleDecodeError(f"unknown BTHome object id 0x{payload[pos]:02x}") from None
        spec = _SPECS[object_id]
        end = pos + 1 + spec.length
        if end > len(payload):
            raise BleDecodeError(f"BTHome object 0x{object_id:02x} truncated")
        raw = int.from_bytes(payload[pos + 1 : end], "little", signed=spec.signed)
        values.append(BTHomeValue(object_id, from_fixed(raw, spec.scale)))
        pos = end
    return tuple(values)
