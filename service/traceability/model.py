"""What the service store keeps for traceability: a device's UDI and the recalled lots."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.model import NonEmpty, UtcDatetime

# EUI-48 (BLE address) and EUI-64 (IEEE 11073 system id) as the PHD IG writes them: upper-case
# hex bytes separated by dashes.
EUI48_PATTERN = r"^[0-9A-F]{2}(-[0-9A-F]{2}){5}$"
EUI64_PATTERN = r"^[0-9A-F]{2}(-[0-9A-F]{2}){7}$"
GTIN_PATTERN = r"^[0-9]{14}$"


class UdiRecord(BaseModel):
    """The UDI a device was registered with: the GS1 element strings of its label, and more.

    ``hri`` is the human-readable form of the whole barcode, ``(01)…(17)…(10)…(21)…``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: NonEmpty
    gtin: Annotated[str, Field(pattern=GTIN_PATTERN)]
    expiry: date | None = None
    lot: str = ""
    serial: str = ""
    hri: NonEmpty
    ble_address: Annotated[str, Field(pattern=EUI48_PATTERN)] | None = None
    system_id: Annotated[str, Field(pattern=EUI64_PATTERN)] | None = None
    manufacturer: str = ""
    registered_at: UtcDatetime


class Recall(BaseModel):
    """A recalled lot (of one GTIN, or of every product when ``gtin`` is empty)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lot: NonEmpty
    gtin: Annotated[str, Field(pattern=r"^([0-9]{14})?$")] = ""
    reason: str = ""
    recorded_at: UtcDatetime

    @property
    def key(self) -> str:
        """The stored key: one recall per (lot, GTIN)."""
        return f"{self.lot}|{self.gtin}"

    def covers(self, lot: str, gtin: str) -> bool:
        """Whether a device of ``lot`` and ``gtin`` is recalled by this."""
        return lot == self.lot and (not self.gtin or gtin == self.gtin)
