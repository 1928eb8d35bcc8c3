"""Auto-dispatch: choose an engineer by region, skill and load; pure and deterministic."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from service.model import ASSIGNED_STATES, Device, Engineer, Site, Ticket


@dataclass(frozen=True, slots=True)
class Assignment:
    """The chosen engineer and why, in words fit for the ticket and the audit log."""

    engineer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class NoEngineer:
    """Nobody is eligible; ``reason`` says which filter emptied the field."""

    reason: str


def workload(tickets: Iterable[Ticket]) -> Counter[str]:
    """Tickets currently held per engineer (dispatched, accepted, on site or waiting)."""
    return Counter(t.assignee for t in tickets if t.assignee and t.state in ASSIGNED_STATES)


def dispatch(
    ticket: Ticket,
    device: Device,
    site: Site,
    engineers: Iterable[Engineer],
    tickets: Iterable[Ticket],
    exclude: Collection[str] = (),
) -> Assignment | NoEngineer:
    """Choose the least-loaded engineer in the site's region skilled in the device's family.

    Load is held tickets / capacity; ties go to the lower engineer id so results are reproducible.
    Engineers in ``exclude`` (e.g. one who let an urgent ticket lapse) are never chosen.
    """
    load = workload(t for t in tickets if t.id != ticket.id)
    return assign(device, site, engineers, load, exclude)


def assign(
    device: Device,
    site: Site,
    engineers: Iterable[Engineer],
    load: Mapping[str, int],
    exclude: Collection[str] = (),
) -> Assignment | NoEngineer:
    """``dispatch`` given each engineer's held tickets (``load``, e.g. counted by the store)."""
    family = device.family
    load = Counter(load)
    pool = sorted((e for e in engineers if e.id not in exclude), key=lambda e: e.id)
    in_region = [e for e in pool if e.region == site.region]
    skilled = [e for e in in_region if family in e.skills]
    free = [e for e in skilled if load[e.id] < e.capacity]
    if not free:
        return NoEngineer(
            f"no engineer for {family} in region {site.region}: {len(in_region)} in region, "
            f"{len(skilled)} skilled, 0 with spare capacity"
            + (f" (excluded: {', '.join(sorted(exclude))})" if exclude else "")
        )
    ratio = {e.id: Fraction(load[e.id], e.capacity) for e in free}
    best = min(free, key=lambda e: (ratio[e.id], e.id))
    tied = [e for e in free if ratio[e.id] == ratio[best.id]]
    reason = (
        f"region {site.region}, skilled in {family}, load {load[best.id]}/{best.capacity}"
        f" — lowest of {len(free)} eligible"
    )
    if len(tied) > 1:
        reason += f", tie with {len(tied) - 1} other(s) broken by engineer id"
    return Assignment(best.id, reason)
