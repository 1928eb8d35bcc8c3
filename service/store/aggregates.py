"""The service KPIs as SQL aggregates over the caller's rows: work proportional to their scope.

Exactly ``service.kpis`` over the same tickets: a clock is decided once stopped or breached,
breached when it ran (or stopped) past its deadline, and its SLA time at the stop was stored
with the row (``service.store.columns``). Those rules need every instant of a ticket to lie at
or before ``now``; the rare ticket recording a later instant (a clock set in the future) is
returned as ``later`` and judged in Python by the caller, so nothing is approximated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from service.model import Ticket
from service.store.queries import Scope

Rows = Callable[[str, Sequence[Any]], list[Any]]
_CORRECTIVE = "('alert', 'manual')"


@dataclass(frozen=True, slots=True)
class ClockTotals:
    """One SLA clock over many tickets: decided, met, and SLA time of those stopped."""

    decided: int = 0
    met: int = 0
    stopped: int = 0
    elapsed_us: int = 0


@dataclass(frozen=True, slots=True)
class ModelTotals:
    """Devices of one model, their exposure in device-days, and their corrective tickets."""

    model: str
    devices: int
    device_days: int
    failures: int


@dataclass(frozen=True, slots=True)
class ProblemTotals:
    """How often a fault hit a model, on how many devices."""

    model: str
    fault: str
    count: int
    devices: int


@dataclass(frozen=True, slots=True)
class CreditTotals:
    """Service credits in one currency: how many, and their sum in minor units."""

    currency: str
    credits: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class KpiFacts:
    """The KPIs' sums over a scope; ``later`` holds the tickets not counted in ``tickets``."""

    tickets: int
    respond: ClockTotals
    resolve: ClockTotals
    fixed_first_time: int
    resolved: int
    models: tuple[ModelTotals, ...]
    problems: tuple[ProblemTotals, ...]
    later: tuple[Ticket, ...] = ()
    scored: int = 0  # tickets with a follow-up score
    score_total: int = 0  # the sum of those scores
    reopened: int = 0  # tickets reopened at least once
    credits: tuple[CreditTotals, ...] = ()  # service credits per currency


def _clock_sums(clock: str) -> str:
    """decided, breached, stopped, elapsed sum of one clock (``?`` twice: now, now)."""
    due, stop = f"{clock}_due_us", f"{clock}_stop_us"
    breached = f"{due} IS NOT NULL AND coalesce({stop}, ?) > {due}"
    return (
        f"sum(CASE WHEN {stop} IS NOT NULL OR ({due} IS NOT NULL AND ? > {due})"
        " THEN 1 ELSE 0 END),"
        f" sum(CASE WHEN {breached} THEN 1 ELSE 0 END),"
        f" count({clock}_elapsed_us), coalesce(sum({clock}_elapsed_us), 0)"
    )


def ticket_totals(rows: Rows, tickets: str, scope: Scope, now_us: int) -> list[int]:
    """count, the clocks' sums, first-time fix and scores over the scope's tickets to ``now``."""
    where, params = scope.clause()
    query = (
        f"SELECT count(*), {_clock_sums('respond')}, {_clock_sums('resolve')},"
        f" sum(CASE WHEN kind IN {_CORRECTIVE} AND resolved_us IS NOT NULL THEN 1 ELSE 0 END),"
        f" sum(CASE WHEN kind IN {_CORRECTIVE} AND resolved_us IS NOT NULL AND site_visits = 1"
        " THEN 1 ELSE 0 END), count(satisfaction), coalesce(sum(satisfaction), 0),"
        " sum(CASE WHEN reopens > 0 THEN 1 ELSE 0 END)"
        f" FROM {tickets} WHERE {where} AND updated_us <= ?"
    )
    (row,) = rows(query, [now_us] * 4 + params + [now_us])
    return [int(value or 0) for value in row]


@dataclass(frozen=True, slots=True)
class OpenTickets:
    """Open tickets of one tier and state, and how many of them breached each SLA clock."""

    tier: str
    state: str
    count: int
    respond_breached: int
    resolve_breached: int


def open_tickets(
    rows: Rows, tickets: str, open_states: Sequence[str], now_us: int
) -> list[OpenTickets]:
    """Open tickets by tier and state at ``now`` (through the state index: open ones only)."""
    marks = ", ".join("?" * len(open_states))
    query = (
        "SELECT tier, state, count(*),"
        " sum(CASE WHEN respond_breach_us <= ? THEN 1 ELSE 0 END),"
        " sum(CASE WHEN resolve_breach_us <= ? THEN 1 ELSE 0 END)"
        f" FROM {tickets} WHERE state IN ({marks}) GROUP BY tier, state"
    )
    found = rows(query, [now_us, now_us, *open_states])
    return [
        OpenTickets(str(t), str(s), int(n), int(a or 0), int(b or 0)) for t, s, n, a, b in found
    ]


def clock_totals(values: Sequence[int]) -> ClockTotals:
    """A ClockTotals from (decided, breached, stopped, elapsed) sums."""
    decided, breached, stopped, elapsed = values
    return ClockTotals(decided, decided - breached, stopped, elapsed)


def model_totals(
    rows: Rows, tickets: str, devices: str, scope: Scope, today: date
) -> tuple[ModelTotals, ...]:
    """Per model of the scope's devices: how many, their device-days, their failures."""
    day = today.toordinal()
    where, params = scope.clause()
    exposure = rows(
        f"SELECT model, count(*), sum(CASE WHEN installed_day < ? THEN ? - installed_day"
        f" ELSE 0 END) FROM {devices} WHERE {where} GROUP BY model",
        [day, day, *params],
    )
    # A ticket's device model is kept on the ticket row, so this is one table's group-by.
    failures = dict(
        rows(
            f"SELECT device_model, count(*) FROM {tickets}"
            f" WHERE {where} AND kind IN {_CORRECTIVE} GROUP BY device_model",
            params,
        )
    )
    found = [
        ModelTotals(model, int(n), int(days or 0), int(failures.get(model, 0)))
        for model, n, days in exposure
    ]
    return tuple(sorted(found, key=lambda m: m.model))


def problem_totals(rows: Rows, tickets: str, scope: Scope) -> tuple[ProblemTotals, ...]:
    """Model × fault (or rule, or "unspecified") × frequency, most frequent first."""
    where, params = scope.clause()
    fault = "coalesce(nullif(fault, ''), nullif(rule_id, ''), 'unspecified')"
    found = rows(
        f"SELECT device_model, {fault}, count(*), count(DISTINCT device_id) FROM {tickets}"
        f" WHERE {where} AND kind IN {_CORRECTIVE} GROUP BY device_model, {fault}",
        params,
    )
    problems = [ProblemTotals(m, f, int(n), int(k)) for m, f, n, k in found]
    # Sorted here, not in SQL: Python's code-point order on both databases.
    return tuple(sorted(problems, key=lambda p: (-p.count, p.model, p.fault)))
