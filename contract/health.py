"""Gateway health: the periodic summary a gateway publishes on ``vigil/v1/gateways/<id>/health``.

Retained, so whoever subscribes sees the latest at once: the BLE side (adapters, scanning,
adverts per second, links and slots, refusals by reason), the clock (whether readings can be
stamped), the outbox backlog and the faults currently raised. Faults also go out as alert
events (``rule_id`` ``gateway.…``) on the alerts topic; this message is the state, not the news.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import invalid
from contract.topics import UPLINK_PREFIX

HEALTH_VERSION = 1


def health_topic(gateway_id: str) -> str:
    """Where a gateway publishes its health summary (the broker ACL lets it)."""
    return f"{UPLINK_PREFIX}/{gateway_id}/health"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AdapterHealth(_Model):
    """One Bluetooth adapter, identified by its MAC (its hciN name may change)."""

    address: str
    name: str
    powered: bool | None = None  # None: not known (no BlueZ)
    discovering: bool | None = None
    scanning: bool
    links: Annotated[int, Field(ge=0)]
    slots: Annotated[int, Field(ge=0)]
    slots_free: Annotated[int, Field(ge=0)]
    queued: Annotated[int, Field(ge=0)] = 0  # connects waiting


class BleHealth(_Model):
    """BLE acquisition as it stands."""

    adapters: list[AdapterHealth]
    scanning: bool
    adverts_per_s: Annotated[float, Field(ge=0)]
    links: Annotated[int, Field(ge=0)]
    slots: Annotated[int, Field(ge=0)]
    patches_paired: Annotated[int, Field(ge=0)]
    patches_gone: Annotated[int, Field(ge=0)]
    rejects: dict[str, Annotated[int, Field(ge=0)]]
    held_readings: Annotated[int, Field(ge=0)] = 0


class ClockHealth(_Model):
    """Whether the gateway's wall clock may stamp readings."""

    state: Annotated[str, Field(min_length=1)]  # "ntp", "after_build_date" or "untrusted"
    trusted: bool
    wall_us: Annotated[int, Field(gt=0)]


class GatewayHealth(_Model):
    """One health message."""

    version: int = HEALTH_VERSION
    gateway_id: Annotated[str, Field(min_length=1)]
    at_us: Annotated[int, Field(gt=0)]
    uptime_s: Annotated[float, Field(ge=0)]
    outbox_pending: Annotated[int, Field(ge=0)]
    faults: list[str] = Field(default_factory=list)
    clock: ClockHealth | None = None
    ble: BleHealth | None = None

    def encode(self) -> bytes:
        """Serialise for the health topic."""
        return self.model_dump_json().encode()


def decode_health(payload: bytes) -> GatewayHealth:
    """Parse a health message; raise ContractError on anything malformed."""
    try:
        return GatewayHealth.model_validate_json(payload)
    except ValidationError as exc:
        raise invalid("gateway health", exc) from None
