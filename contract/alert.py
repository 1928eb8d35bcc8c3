"""Alert events: what the rule engine emits and the service backbone consumes."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import invalid


class Severity(IntEnum):
    """How urgently an alert needs a person; maps onto service SLA tiers."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3


class AlertTransition(StrEnum):
    """The lifecycle step an event reports."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class AlertEvent(BaseModel):
    """One step in the life of the single active alert per (device, rule).

    ``evidence`` carries what triggered it: the rule, its thresholds and the window of readings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: Annotated[str, Field(min_length=1)]
    rule_id: Annotated[str, Field(min_length=1)]
    severity: Severity
    transition: AlertTransition
    at_us: Annotated[int, Field(gt=0)]
    message: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)

    def encode(self) -> bytes:
        """Serialise for the alerts topic."""
        return self.model_dump_json().encode()


def decode_alert(payload: bytes) -> AlertEvent:
    """Parse an alert event; raise ContractError on anything malformed."""
    try:
        return AlertEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("alert event", exc) from None
