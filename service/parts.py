"""Spare parts: stock per warehouse, reserved on dispatch, consumed on resolve; pure rules.

Each service region has one warehouse, named after the region: a ticket's parts come from the
warehouse of the region its engineer works in. What a dispatch reserves is the first fix of the
ticket's knowledge-base entry (``KnowledgeEntry.kit``); what a resolve consumes is the parts
the engineer reports (``Resolve.parts``). A row whose available quantity (on hand − reserved)
falls to its ``low_at`` mark is *low*; the worker tells the service team once per fall.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, computed_field

Quantity = Annotated[int, Field(ge=0, le=1_000_000)]


class Stock(BaseModel):
    """One part in one warehouse."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warehouse: str
    part: str
    on_hand: int
    reserved: Quantity = 0
    low_at: Quantity = 0  # low when available <= low_at

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> int:
        """What a new reservation may take."""
        return self.on_hand - self.reserved

    @computed_field  # type: ignore[prop-decorator]
    @property
    def low(self) -> bool:
        """True when the available quantity is at or below the low-stock mark."""
        return self.available <= self.low_at


class Reservation(BaseModel):
    """Parts held for one ticket in one warehouse."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    warehouse: str
    part: str
    quantity: int


def warehouse_of(region: str) -> str:
    """The warehouse that serves ``region``."""
    return region


def counted(parts: Iterable[str]) -> dict[str, int]:
    """How many of each part, in part-number order (a part listed twice is needed twice)."""
    return dict(sorted(Counter(parts).items()))
