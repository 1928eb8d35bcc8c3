"""Request and response bodies of the REST API; every response has a model, so no field leaks."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer

from contract import AlertEvent
from contract.health import GatewayHealth
from service.model import (
    Device,
    Evidence,
    Site,
    Ticket,
    TicketKind,
    TicketState,
    Tier,
    UtcDatetime,
)
from service.presence_model import PresenceRecord

# Instants the API computes itself are written with ``isoformat()`` ("+00:00"), as ever.
IsoDatetime = Annotated[AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str)]


class Out(BaseModel):
    """A response body: frozen, and unknown fields are errors rather than silently passed on."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    """Who is calling."""

    ADMIN = "admin"
    ENGINEER = "engineer"
    HOSPITAL = "hospital"
    PATIENT = "patient"


class Principal(BaseModel):
    """An authenticated caller; ``subject`` is the engineer, site or patient id."""

    model_config = ConfigDict(frozen=True)

    role: Role
    subject: str | None = None


class Health(Out):
    """Liveness."""

    status: str


class ReadingOut(Out):
    """One stored reading."""

    device_id: str
    metric: str
    value: float
    unit: str
    ts_us: int
    seq: int


class BucketOut(Out):
    """Min, avg, max and count of one metric in one time bucket."""

    bucket_start_us: int
    min: float
    avg: float
    max: float
    samples: int


class Inspection(Out):
    """A past inspection of a device: the recorded date or a resolved preventive ticket."""

    on: date
    ticket_id: str | None = None


class PresenceView(PresenceRecord):
    """A presence record with the uptime it implies now."""

    uptime_s: float | None = None


class GatewayView(Out):
    """What the service knows of one gateway: its presence and its latest health summary."""

    gateway_id: str
    presence: PresenceView | None
    health: GatewayHealth | None


class DeviceFile(Out):
    """Everything about one device: "one device, one file"."""

    device: Device
    site: Site | None
    tickets: list[Ticket]
    alerts: list[AlertEvent]
    inspections: list[Inspection]
    parts: list[str]
    links: dict[str, str]
    # Presence (equipment with a last will) and the health of the gateway relaying it.
    presence: PresenceView | None = None
    gateway: GatewayView | None = None


class PatientStateChange(Out):
    """A state a ticket entered and when, as a patient sees it (no engineer's note)."""

    state: TicketState
    at: UtcDatetime


class PatientTicket(Out):
    """A ticket as a patient sees it: what happens to their device and when.

    Left out, as staff data: the assignee and earlier assignees, the dispatch reason, the
    engineers' notes, fault, resolution and parts, escalations, and the signer's name.
    """

    id: str
    device_id: str
    kind: TicketKind
    tier: Tier
    state: TicketState
    opened_at: UtcDatetime
    title: str
    evidence: tuple[Evidence, ...]
    history: tuple[PatientStateChange, ...]
    signed_at: UtcDatetime | None
    satisfaction: int | None


class PatientDeviceFile(Out):
    """A patient's own device file: their tickets in the patient view, no parts list."""

    device: Device
    site: Site | None
    tickets: list[PatientTicket]
    alerts: list[AlertEvent]
    inspections: list[Inspection]
    links: dict[str, str]


class SlaClockOut(Out):
    """One SLA clock of one ticket."""

    deadline: IsoDatetime | None
    remaining_s: float
    breached: bool
    paused: bool
    stopped_at: IsoDatetime | None


class TicketSla(Out):
    """Both SLA clocks of one ticket, as of now."""

    ticket_id: str
    tier: Tier
    breached: bool
    respond: SlaClockOut
    resolve: SlaClockOut


class AttainmentOut(Out):
    """Decided and met tickets of one SLA clock."""

    decided: int
    met: int
    percent: float | None
    mean_elapsed_s: float | None


class FirstTimeFix(Out):
    """Resolved tickets fixed on the first visit."""

    fixed_first_time: int
    resolved: int
    percent: float | None


class ModelFailureRate(Out):
    """Failures per device-year of one model."""

    model: str
    devices: int
    failures: int
    device_years: float
    per_device_year: float | None


class ProblemOut(Out):
    """How often a fault hit a model."""

    model: str
    fault: str
    count: int
    devices: int


class SatisfactionOut(Out):
    """Follow-up scores (1-5): how many tickets were scored, and their mean."""

    responses: int
    mean: float | None


class CreditTotalOut(Out):
    """Service credits (SLA compensation) in one currency: how many, and their sum in cents."""

    currency: str
    credits: int
    amount_minor: int


class Kpis(Out):
    """The service KPIs over the devices and tickets the caller sees."""

    at: IsoDatetime
    tickets: int
    respond_attainment: AttainmentOut
    resolve_attainment: AttainmentOut
    first_time_fix: FirstTimeFix
    failure_rate_by_model: list[ModelFailureRate]
    problems: list[ProblemOut]
    satisfaction: SatisfactionOut
    service_credits: list[CreditTotalOut]
    reopened: int  # tickets reopened at least once (their fix did not hold)


class AuditProblemOut(Out):
    """One row of the audit log that fails verification."""

    seq: int
    reason: str


class AuditVerification(Out):
    """Whether the hash-chained audit log is intact, and where not."""

    ok: bool
    problems: list[AuditProblemOut]


class BoardTicket(Out):
    """An open ticket on the SLA board: who holds it and both of its clocks, as of now."""

    id: str
    device_id: str
    kind: TicketKind
    tier: Tier
    state: TicketState
    assignee: str | None
    opened_at: IsoDatetime
    title: str
    breached: bool
    respond: SlaClockOut
    resolve: SlaClockOut


class LatestReading(Out):
    """The latest reading of one metric of one device."""

    value: float
    unit: str
    ts_us: int
    seq: int


class BaselineBrief(Out):
    """A wound's learnt baseline under one rule and the value the rule compares with it now
    (``current`` null while unknown, e.g. inside the exclusion window after a dressing change;
    ``delta`` = current - baseline). Written by the rules as they change and at least daily
    (``at_us``: the time of the newest reading behind it)."""

    rule_id: str
    metric: str
    baseline: float
    current: float | None
    delta: float | None
    at_us: int


class OpenTicketBrief(Out):
    """An open ticket of a device, as a site board shows it."""

    id: str
    kind: TicketKind
    tier: Tier
    state: TicketState
    assignee: str | None
    opened_at: IsoDatetime
    title: str


class DeviceBoardRow(Out):
    """One device on a site (or ward) board: where it is, its latest readings per metric, its
    open tickets, its active alerts and its wound baselines (dressings)."""

    device_id: str
    kind: str
    model: str
    ward: str
    room: str
    bed: str
    patient: str | None
    latest: dict[str, LatestReading]
    tickets: list[OpenTicketBrief]
    alerts: list[AlertEvent]
    baselines: list[BaselineBrief] = []


class SiteBoard(Out):
    """A site's (or ward's) devices with their latest readings, open tickets and active alerts."""

    site: Site
    devices: list[DeviceBoardRow]
