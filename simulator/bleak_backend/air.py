"""What a patch puts on the air, as bytes: a legacy advert and its scan response (≤ 31 B each).

docs/ble-profile.md §3.1 states the layout; the virtual radio sends these bytes and the virtual
BlueZ parses them back, so an advert that could not exist on a real radio fails here first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Final

from contract.ble import uuids

LEGACY_MAX: Final = 31  # bytes of AD structures in one legacy advert or scan response PDU

AD_FLAGS: Final = 0x01
AD_UUID128_COMPLETE: Final = 0x07
AD_NAME_SHORT: Final = 0x08
AD_NAME_COMPLETE: Final = 0x09
AD_SERVICE_DATA16: Final = 0x16
# LE General Discoverable, BR/EDR not supported.
FLAGS_LE_GENERAL: Final = 0x06


@dataclass(frozen=True, slots=True)
class AirData:
    """The AD structures of one PDU, as a scanner decodes them."""

    flags: int | None = None
    local_name: str | None = None
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()


def ad_structure(ad_type: int, payload: bytes) -> bytes:
    """``len ‖ type ‖ payload``: one AD structure."""
    if len(payload) > LEGACY_MAX - 2:
        raise ValueError(f"AD type 0x{ad_type:02x} payload of {len(payload)} B cannot fit")
    return bytes([len(payload) + 1, ad_type]) + payload


def advert_pdu(bthome: bytes | None) -> bytes:
    """The advert: Flags, then BTHome service data under 0xFCD2 (when there is a measurement)."""
    out = ad_structure(AD_FLAGS, bytes([FLAGS_LE_GENERAL]))
    if bthome is not None:
        out += ad_structure(AD_SERVICE_DATA16, uuids.BTHOME_UUID16.to_bytes(2, "little") + bthome)
    return _checked(out, "advert")


def scan_response(name: str, *, connectable: bool) -> bytes:
    """The scan response: the 128-bit patch service (connectable patches), then the name,
    shortened to what is left of the 31 bytes."""
    out = b""
    if connectable:
        out += ad_structure(AD_UUID128_COMPLETE, uuid.UUID(uuids.PATCH_SERVICE).bytes[::-1])
    encoded = name.encode()
    room = LEGACY_MAX - len(out) - 2
    if room > 0 and encoded:
        kind = AD_NAME_COMPLETE if len(encoded) <= room else AD_NAME_SHORT
        out += ad_structure(kind, encoded[:room])
    return _checked(out, "scan response")


def parse(pdu: bytes) -> AirData:
    """Decode the AD structures of one PDU (ValueError on a malformed one)."""
    flags: int | None = None
    name: str | None = None
    service_data: dict[str, bytes] = {}
    service_uuids: list[str] = []
    i = 0
    while i < len(pdu):
        length = pdu[i]
        if length == 0:
            break  # the rest is padding
        if i + 1 + length > len(pdu):
            raise ValueError(f"AD structure at {i} overruns the PDU")
        ad_type, payload = pdu[i + 1], pdu[i + 2 : i + 1 + length]
        i += 1 + length
        if ad_type == AD_FLAGS and payload:
            flags = payload[0]
        elif ad_type in (AD_NAME_SHORT, AD_NAME_COMPLETE):
            name = payload.decode(errors="replace")
        elif ad_type == AD_SERVICE_DATA16 and len(payload) >= 2:
            service_data[uuids.sig_uuid(int.from_bytes(payload[:2], "little"))] = payload[2:]
        elif ad_type == AD_UUID128_COMPLETE:
            for j in range(0, len(payload) - 15, 16):
                service_uuids.append(str(uuid.UUID(bytes=payload[j : j + 16][::-1])))
    return AirData(flags, name, service_data, tuple(service_uuids))


def _checked(pdu: bytes, what: str) -> bytes:
    if len(pdu) > LEGACY_MAX:
        raise ValueError(f"{what} of {len(pdu)} B exceeds the {LEGACY_MAX} B of a legacy PDU")
    return pdu
