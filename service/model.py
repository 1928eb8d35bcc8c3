"""The service domain: installed base (sites, devices, patients, engineers) and tickets."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from contract import AlertTransition, DeviceKind, Severity


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Every instant in the service domain is aware and normalised to UTC so comparisons never lie.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Site(_Frozen):
    """A hospital (or the hospital that issued home kits) in a service region."""

    id: NonEmpty
    hospital: NonEmpty
    region: NonEmpty


class Location(_Frozen):
    """Where in a site a device stands."""

    ward: str = ""
    room: str = ""
    bed: str = ""  # where a nurse finds the patient: "bed 3", "B"


class Device(_Frozen):
    """One installed device; ``patient`` holds a pseudonym when it belongs to a home kit."""

    id: NonEmpty
    kind: DeviceKind
    model: NonEmpty
    serial: NonEmpty
    lot: str = ""
    firmware: str = ""
    installed_on: date
    warranty_end: date | None = None
    service_contract: str | None = None
    site_id: NonEmpty
    location: Location | None = None
    patient: str | None = None
    last_inspection: date | None = None

    @property
    def family(self) -> DeviceKind:
        """The device family engineers are skilled in."""
        return self.kind


class Patient(_Frozen):
    """A pseudonymous patient and the devices of their home kit; no identifying data here."""

    id: NonEmpty
    site_id: NonEmpty
    kit: tuple[str, ...] = ()


class Engineer(_Frozen):
    """A field engineer: where they work, what they can fix and how many tickets they can hold."""

    id: NonEmpty
    name: NonEmpty
    region: NonEmpty
    skills: frozenset[DeviceKind] = frozenset()
    capacity: Annotated[int, Field(ge=0)] = 5
    supervisor: str | None = None


class Tier(StrEnum):
    """SLA tier of a ticket."""

    URGENT = "urgent"
    GENERAL = "general"


class TicketKind(StrEnum):
    """Why a ticket exists."""

    ALERT = "alert"
    MANUAL = "manual"
    PREVENTIVE = "preventive"
    WARRANTY = "warranty"


class TicketState(StrEnum):
    """Lifecycle states; see service.lifecycle for the allowed moves."""

    OPEN = "open"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    WAITING_FOR_CUSTOMER = "waiting_for_customer"
    RESOLVED = "resolved"
    SIGNED_OFF = "signed_off"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"


# A ticket counts as open (for dedupe) until the fault is resolved; later states are paperwork.
OPEN_STATES = frozenset(
    {
        TicketState.OPEN,
        TicketState.DISPATCHED,
        TicketState.ACCEPTED,
        TicketState.ON_SITE,
        TicketState.WAITING_FOR_CUSTOMER,
    }
)
# States in which a ticket occupies its assignee's capacity.
ASSIGNED_STATES = OPEN_STATES - {TicketState.OPEN}


class Evidence(_Frozen):
    """One alert event attached to a ticket."""

    at: UtcDatetime
    severity: Severity
    transition: AlertTransition | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class StateChange(_Frozen):
    """One entry of a ticket's history: the state entered and when."""

    state: TicketState
    at: UtcDatetime
    note: str = ""


class Signature(_Frozen):
    """Customer sign-off of the service report: who signed and the SHA-256 of what they signed."""

    signer: NonEmpty
    report_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    at: UtcDatetime


class Ticket(_Frozen):
    """A service ticket; immutable, its state changes only through service.lifecycle.transition."""

    id: NonEmpty
    device_id: NonEmpty
    rule_id: str | None = None
    kind: TicketKind = TicketKind.ALERT
    tier: Tier
    tier_since: UtcDatetime
    state: TicketState = TicketState.OPEN
    opened_at: UtcDatetime
    title: str = ""
    evidence: tuple[Evidence, ...] = ()
    assignee: str | None = None
    dispatch_reason: str = ""
    previous_assignees: tuple[str, ...] = ()
    history: tuple[StateChange, ...] = ()
    paused_from: TicketState | None = None
    escalated_at: tuple[UtcDatetime, ...] = ()
    fault: str | None = None
    resolution: str = ""
    parts: tuple[str, ...] = ()  # part numbers used by the fix, for the device file
    signature: Signature | None = None
    satisfaction: Annotated[int, Field(ge=1, le=5)] | None = None
    # The stored revision this copy was read at (0: never stored). The store writes a change
    # only over the revision it was read at, so two writers cannot overwrite each other.
    version: Annotated[int, Field(ge=0)] = 0

    @property
    def is_open(self) -> bool:
        """True until the fault is resolved."""
        return self.state in OPEN_STATES

    @property
    def last_change(self) -> datetime:
        """When the ticket last changed state (its opening if never)."""
        return self.history[-1].at if self.history else self.opened_at

    def entered(self, state: TicketState) -> datetime | None:
        """When the ticket first entered ``state``, or None."""
        return next((c.at for c in self.history if c.state is state), None)

    @property
    def reopens(self) -> tuple[datetime, ...]:
        """When the ticket was reopened: every return to ``open`` after its opening."""
        return tuple(c.at for c in self.history[1:] if c.state is TicketState.OPEN)

    def episode(self) -> Ticket:
        """The ticket since its last reopening (itself if never reopened).

        SLA clocks and escalations judge this episode: a reopened ticket starts both clocks
        again at the reopening (see docs/service.md, "Reopening").
        """
        reopens = self.reopens
        if not reopens:
            return self
        start = max(i for i, c in enumerate(self.history) if c.state is TicketState.OPEN)
        return self.model_copy(update={"history": self.history[start:], "opened_at": reopens[-1]})

    @property
    def site_visits(self) -> int:
        """How many times an engineer arrived on site (returns from a pause do not count)."""
        states = [c.state for c in self.history]
        return sum(
            1
            for before, now in zip([TicketState.OPEN, *states], states, strict=False)
            if now is TicketState.ON_SITE and before is not TicketState.WAITING_FOR_CUSTOMER
        )


def new_ticket(
    ticket_id: str,
    device_id: str,
    tier: Tier,
    at: datetime,
    *,
    rule_id: str | None = None,
    kind: TicketKind = TicketKind.MANUAL,
    title: str = "",
    evidence: tuple[Evidence, ...] = (),
) -> Ticket:
    """A freshly opened ticket (people use this for one-click repair requests too)."""
    return Ticket(
        id=ticket_id,
        device_id=device_id,
        rule_id=rule_id,
        kind=kind,
        tier=tier,
        tier_since=at,
        opened_at=at,
        title=title,
        evidence=evidence,
        history=(StateChange(state=TicketState.OPEN, at=at),),
    )


class Delivery(_Frozen):
    """One attempt to deliver a notification; every attempt is kept, successful or not."""

    event_id: NonEmpty
    url: NonEmpty
    attempt: Annotated[int, Field(ge=1)]
    at: UtcDatetime
    status: int | None = None
    ok: bool = False
    error: str = ""


class Channel(StrEnum):
    """How a pending notification travels."""

    WEBHOOK = "webhook"
    MQTT = "mqtt"
    EMAIL = "email"


class OutboxStatus(StrEnum):
    """``pending`` until delivered (``done``) or given up after the last retry (``failed``)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class OutboxItem(_Frozen):
    """One notification to one target (webhook URL or MQTT topic), written with the change.

    ``key`` is ``event_id|channel|target``, so each target is delivered (and retried) on its own.
    """

    key: NonEmpty
    event_id: NonEmpty
    channel: Channel
    target: NonEmpty
    role: NonEmpty
    subject: NonEmpty
    event: NonEmpty
    payload: dict[str, Any]
    created_at: UtcDatetime
    next_at: UtcDatetime
    attempts: Annotated[int, Field(ge=0)] = 0
    status: OutboxStatus = OutboxStatus.PENDING
    last_error: str = ""


class DeadLetter(_Frozen):
    """A message the service worker could not use, kept with why for inspection or replay."""

    # The payload may be any bytes at all: base64 in JSON, so it always serialises.
    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    received_at: UtcDatetime
    topic: str
    reason: NonEmpty
    payload: bytes
