"""The patches this gateway is paired with: address, provisioned key, and the id readings carry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contract.ble.address import address_from_str

KEY_LEN = 16


@dataclass(frozen=True, slots=True)
class PairedPatch:
    """One allowlisted patch; ``address`` is normalised to upper case."""

    address: str
    key: bytes = field(repr=False)  # never in logs
    device_id: str
    mac: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", self.address.upper())
        object.__setattr__(self, "mac", address_from_str(self.address))
        if len(self.key) != KEY_LEN:
            raise ValueError(f"{self.address}: key is {len(self.key)} bytes, expected {KEY_LEN}")


def allowlist(patches: Iterable[PairedPatch]) -> dict[str, PairedPatch]:
    """Index paired patches by address; a duplicate address is a provisioning error."""
    out: dict[str, PairedPatch] = {}
    for patch in patches:
        if patch.address in out:
            raise ValueError(f"{patch.address} is paired twice")
        out[patch.address] = patch
    return out
