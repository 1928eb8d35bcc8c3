"""Bluetooth device addresses as the 6 bytes the nonces use, most significant byte first."""

from __future__ import annotations

from contract.ble.errors import BleEncodeError

ADDRESS_LEN = 6


def address_from_str(text: str) -> bytes:
    """Parse ``"AA:BB:CC:DD:EE:FF"`` (or ``-`` separated) into 6 bytes in display order."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != ADDRESS_LEN or any(len(p) != 2 for p in parts):
        raise BleEncodeError(f"not a Bluetooth address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise BleEncodeError(f"not a Bluetooth address: {text!r}") from None


def address_to_str(address: bytes) -> str:
    """Format 6 address bytes as ``"AA:BB:CC:DD:EE:FF"``."""
    return ":".join(f"{b:02X}" for b in address)
