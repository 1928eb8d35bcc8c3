"""Service credits: what an SLA breach owes the customer, by tier and clock; pure.

A breach found by the breach scan can create one ``ServiceCredit`` (the contract's
compensation) when the configured policy gives that tier and clock an amount. Credits are kept
in minor units (cents) of one currency, so sums are exact; the key — ticket, clock and breach
instant — makes creating one twice impossible.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.model import Device, Tier, UtcDatetime
from service.sla import Breach, Clock

Minor = Annotated[int, Field(ge=0, le=10**12)]  # an amount in minor units (e.g. cents)


class CompensationPolicy(BaseModel):
    """How much each breach earns the customer; ``contract_only``: devices under contract only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    credits: dict[Tier, dict[Clock, Minor]] = {}
    contract_only: bool = False

    def amount(self, tier: Tier, clock: Clock) -> int:
        """The credit of one breach of ``clock`` under ``tier`` (0: none)."""
        return self.credits.get(tier, {}).get(clock, 0)


class ServiceCredit(BaseModel):
    """One compensation record: a breach and what it is worth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    ticket_id: str
    device_id: str
    site_id: str
    patient: str | None = None
    clock: Clock
    tier: Tier
    breach_at: UtcDatetime
    amount_minor: Annotated[int, Field(ge=1)]
    currency: str
    created_at: UtcDatetime
    reason: str


def credit_key(breach: Breach) -> str:
    """The one key a breach's credit can have."""
    return f"{breach.ticket_id}|{breach.clock}|{breach.at.isoformat()}"


def credit_for(
    breach: Breach, device: Device | None, policy: CompensationPolicy | None, now: datetime
) -> ServiceCredit | None:
    """The credit ``breach`` earns under ``policy``; None when it earns none."""
    if policy is None or device is None:
        return None
    if policy.contract_only and not device.service_contract:
        return None
    amount = policy.amount(breach.tier, breach.clock)
    if amount <= 0:
        return None
    return ServiceCredit(
        key=credit_key(breach),
        ticket_id=breach.ticket_id,
        device_id=device.id,
        site_id=device.site_id,
        patient=device.patient,
        clock=breach.clock,
        tier=breach.tier,
        breach_at=breach.at,
        amount_minor=amount,
        currency=policy.currency,
        created_at=now,
        reason=f"{breach.tier} {breach.clock} SLA breached at {breach.at.isoformat()}",
    )
