"""The message MQTT-reporting equipment publishes on its site broker."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.catalog import DeviceKind
from contract.errors import invalid


class EquipmentMessage(BaseModel):
    """One telemetry message from a piece of equipment: several metrics at one instant."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    kind: DeviceKind
    seq: Annotated[int, Field(ge=0)]
    ts_us: Annotated[int, Field(gt=0)]
    metrics: dict[str, float]

    def encode(self) -> bytes:
        """Serialise for publishing."""
        return self.model_dump_json().encode()


def decode_equipment_message(payload: bytes) -> EquipmentMessage:
    """Parse an equipment message; raise ContractError on anything malformed."""
    try:
        return EquipmentMessage.model_validate_json(payload, strict=False)
    except ValidationError as exc:
        raise invalid("equipment message", exc) from None
