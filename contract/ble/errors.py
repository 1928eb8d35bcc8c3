"""Errors of the BLE profile codecs: one type for bad bytes, one for bad encoder input."""

from contract.errors import ContractError


class BleDecodeError(ContractError):
    """Bytes received over BLE do not form a valid value of the profile; ``str()`` says why."""


class BleAuthError(BleDecodeError):
    """A frame or advertisement failed authentication: wrong key, tampered bytes or downgrade."""


class BleEncodeError(ContractError):
    """A value cannot be represented on the wire (out of range, wrong size, not finite)."""
