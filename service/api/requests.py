"""Request bodies of the REST API: every field bounded (see ``service.api.text``), no extras.

The installed-base bodies are the domain models with each field narrowed; ``domain()`` turns
one back into the plain domain model before it reaches ``desk``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.text import (
    ApiDate,
    IdText,
    Label,
    LongText,
    MaybeId,
    Name,
    Note,
    SafeText,
    ShortText,
)
from service.model import Device, Engineer, Location, Patient, Site, Tier


class In(BaseModel):
    """A request body: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NewTicket(In):
    """A one-click repair request."""

    device_id: IdText
    title: SafeText = ""
    tier: Tier = Tier.GENERAL


PartNumber = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]


EventName = Literal[
    "dispatch",
    "accept",
    "arrive",
    "depart",
    "pause",
    "resume",
    "resolve",
    "sign_off",
    "follow_up",
    "close",
]


class EventRequest(In):
    """A lifecycle event by name with its fields."""

    event: EventName
    engineer_id: MaybeId = ""
    reason: Note = ""
    note: Note = ""
    fault: SafeText = ""
    resolution: Note = ""
    parts: Annotated[list[PartNumber], Field(max_length=50)] = []
    signer: SafeText = ""
    report: LongText = ""
    satisfaction: Annotated[int, Field(ge=1, le=5)] = 5


class SiteIn(Site):
    """A site as an admin sends it."""

    id: IdText
    hospital: Name
    region: Label

    def domain(self) -> Site:
        """The plain domain model."""
        return Site.model_validate(self.model_dump())


class LocationIn(Location):
    """Where in a site a device stands, as an admin sends it."""

    ward: ShortText = ""
    room: ShortText = ""
    bed: ShortText = ""


class DeviceIn(Device):
    """A device as an admin sends it; dates in [1970-01-01, 2999-12-31]."""

    id: IdText
    model: Label
    serial: Label
    lot: ShortText = ""
    firmware: ShortText = ""
    installed_on: ApiDate
    warranty_end: ApiDate | None = None
    service_contract: SafeText | None = None
    site_id: IdText
    location: LocationIn | None = None
    patient: IdText | None = None
    last_inspection: ApiDate | None = None

    def domain(self) -> Device:
        """The plain domain model."""
        return Device.model_validate(self.model_dump())


class PatientIn(Patient):
    """A pseudonymous patient as an admin sends it (a kit of at most 100 devices)."""

    id: IdText
    site_id: IdText
    kit: Annotated[tuple[IdText, ...], Field(max_length=100)] = ()

    def domain(self) -> Patient:
        """The plain domain model."""
        return Patient.model_validate(self.model_dump())


class EngineerIn(Engineer):
    """An engineer as an admin sends it."""

    id: IdText
    name: Name
    region: Label
    capacity: Annotated[int, Field(ge=0, le=1000)] = 5
    supervisor: IdText | None = None

    def domain(self) -> Engineer:
        """The plain domain model."""
        return Engineer.model_validate(self.model_dump())
