"""BTHome v2 service data (UUID 0xFCD2): the patch's passive, connectionless advertising mode.

Service data = device-info byte, [MAC reversed, if bit 1], then either the objects in clear or,
when bit 0 is set, AES-CCM ciphertext || counter (u32 LE) || 4-byte MIC. The nonce is
MAC (6, display order) || d2 fc || device-info byte || counter (u32 LE), with no associated data,
exactly as BTHome v2 specifies. Each object is an id byte and a fixed-length little-endian value.
An object vigil does not use but BTHome defines is skipped by its length and listed in
``unknown``; an id BTHome does not define leaves the rest unparseable: the objects before it are
kept and the id is listed. A device that adds an object to its firmware loses nothing it sent.
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
    unknown: tuple[int, ...] = ()  # object ids skipped (vigil does not use them), in order

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
    extra_objects: bytes = b"",
) -> bytes:
    """Service data for UUID 0xFCD2; encrypted when ``key`` is given (then ``mac`` and
    ``counter`` are required). Objects are stably sorted by id, as BTHome asks;
    ``extra_objects`` (encoded objects vigil does not use: a newer firmware's) follow them."""
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
    objects += extra_objects
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
    values, unknown = _decode_objects(rest)
    return BTHomeAdvert(
        values=values,
        unknown=unknown,
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


def _decode_objects(payload: bytes) -> tuple[tuple[BTHomeValue, ...], tuple[int, ...]]:
    """The objects vigil knows, and the ids it skipped (an undefined id ends the parse)."""
    values: list[BTHomeValue] = []
    unknown: list[int] = []
    pos = 0
    while pos < len(payload):
        raw_id = payload[pos]
        try:
            object_id = BTHomeObject(raw_id)
        except ValueError:
            unknown.append(raw_id)
            skipped = _skip(payload, pos)
            if skipped is None:
                break  # its length is not known: nothing after it can be read
            pos = skipped
            continue
        spec = _SPECS[object_id]
        end = pos + 1 + spec.length
        if end > len(payload):
            raise BleDecodeError(f"BTHome object 0x{object_id:02x} truncated")
        raw = int.from_bytes(payload[pos + 1 : end], "little", signed=spec.signed)
        values.append(BTHomeValue(object_id, from_fixed(raw, spec.scale)))
        pos = end
    return tuple(values), tuple(unknown)


def _skip(payload: bytes, pos: int) -> int | None:
    """Where the object at ``pos`` (one vigil does not use) ends; None if BTHome has no length
    for its id or it runs past the end."""
    object_id = payload[pos]
    if object_id in _VARIABLE:
        if pos + 1 >= len(payload):
            return None
        end = pos + 2 + payload[pos + 1]
    elif (length := _LENGTHS.get(object_id)) is not None:
        end = pos + 1 + length
    else:
        return None
    return end if end <= len(payload) else None


# Value lengths of every object id BTHome v2 defines (bthome.io/format), for skipping the ones
# vigil does not use. 0x53 (text) and 0x54 (raw) carry their own length byte.
_LENGTHS: Final[dict[int, int]] = {
    **dict.fromkeys((0x00, 0x01, 0x09, 0x2E, 0x2F, 0x3A, 0x46), 1),
    **dict.fromkeys(range(0x0F, 0x2E), 1),  # binary sensors
    **dict.fromkeys((0x02, 0x03, 0x06, 0x07, 0x08, 0x0C, 0x0D, 0x0E, 0x12, 0x13, 0x14), 2),
    **dict.fromkeys((0x3C, 0x3D, 0x3F, 0x40, 0x41, 0x43, 0x44, 0x45, 0x47, 0x48, 0x49), 2),
    **dict.fromkeys((0x4A, 0x51, 0x52, 0xF0), 2),
    **dict.fromkeys((0x04, 0x05, 0x0A, 0x0B, 0x42, 0x4B, 0xF2), 3),
    **dict.fromkeys((0x3E, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0xF1), 4),
}
_VARIABLE: Final = frozenset({0x53, 0x54})
