"""The knowledge base: per device model and fault code, the likely causes and the fixes; pure.

A fault code is an alert's rule id (``dressing.battery.low``) or a resolved fault type
(``fan``). Entries of model ``any`` hold for every model. When a ticket opens, the entries of
its device's model (and ``any``) for its rule id are suggested to the engineer; the first fix's
parts are what dispatch reserves (``service.parts``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.model import Ticket

ANY_MODEL = "any"
Line = Annotated[str, Field(min_length=1, max_length=500)]
PartNo = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]


class Fix(BaseModel):
    """One way to fix the fault, with the parts it takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Line
    parts: tuple[PartNo, ...] = Field((), max_length=20)


class KnowledgeEntry(BaseModel):
    """What is known about one fault code on one model (or ``any`` model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
    title: Line
    causes: tuple[Line, ...] = Field((), max_length=20)
    fixes: tuple[Fix, ...] = Field((), max_length=20)

    def search_text(self) -> str:
        """Everything a search matches against, lower-cased."""
        words = [self.model, self.code, self.title, *self.causes]
        words += [f.text for f in self.fixes] + [p for f in self.fixes for p in f.parts]
        return "\n".join(words).lower()

    @property
    def kit(self) -> tuple[str, ...]:
        """The parts of the first (most likely) fix: what dispatch reserves."""
        return self.fixes[0].parts if self.fixes else ()


def fault_codes(ticket: Ticket) -> list[str]:
    """The codes a ticket is known by: its rule id and its resolved fault type."""
    return [c for c in (ticket.rule_id, ticket.fault) if c]


def ranked(entries: list[KnowledgeEntry], model: str) -> list[KnowledgeEntry]:
    """Entries of the device's own model before those of ``any`` model, then by code."""
    return sorted(entries, key=lambda e: (e.model != model, e.code, e.model))
