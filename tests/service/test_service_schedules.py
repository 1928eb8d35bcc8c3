"""Preventive maintenance and warranty-expiry tasks."""

from __future__ import annotations

from datetime import UTC, date, datetime

from contract import DeviceKind
from service.lifecycle import Resolve
from service.model import TicketKind
from service.schedules import (
    PREVENTIVE_RULE,
    ScheduleConfig,
    due_tasks,
    last_inspection,
    ticket_for,
)
from tests.service.factories import device, on_site, ticket, walk

CONFIG = ScheduleConfig()
NOW = datetime(2026, 6, 1, 6, tzinfo=UTC)


def test_inspection_due_after_90_days() -> None:
    fresh = device("fresh", last_inspection=date(2026, 3, 3))  # 90 days: not yet
    stale = device("stale", last_inspection=date(2026, 3, 2))  # 91 days
    tasks = due_tasks([fresh, stale], [], NOW, CONFIG)
    assert [(t.device_id, t.rule_id, t.kind) for t in tasks] == [
        ("stale", PREVENTIVE_RULE, TicketKind.PREVENTIVE)
    ]
    assert "91 days ago" in tasks[0].reason


def test_install_date_counts_as_an_inspection() -> None:
    assert due_tasks([device(installed_on=date(2026, 5, 1))], [], NOW, CONFIG) == []


def test_resolved_preventive_ticket_is_the_last_inspection() -> None:
    d = device(last_inspection=date(2025, 1, 1))
    pm = ticket(rule_id=PREVENTIVE_RULE, kind=TicketKind.PREVENTIVE)
    pm = walk(
        on_site(pm, datetime(2026, 5, 1, tzinfo=UTC)),
        (Resolve("inspection"), datetime(2026, 5, 2, tzinfo=UTC)),
    )
    assert last_inspection(d, [pm]) == date(2026, 5, 2)
    assert due_tasks([d], [pm], NOW, CONFIG) == []


def test_no_second_task_while_one_is_open() -> None:
    d = device(last_inspection=date(2025, 1, 1))
    open_pm = ticket(rule_id=PREVENTIVE_RULE, kind=TicketKind.PREVENTIVE)
    assert due_tasks([d], [open_pm], NOW, CONFIG) == []


def test_dressings_are_not_inspected() -> None:
    patch = device(kind=DeviceKind.PATCH, installed_on=date(2020, 1, 1))
    assert due_tasks([patch], [], NOW, CONFIG) == []


def test_warranty_task_30_days_before_end_and_once_only() -> None:
    d = device(installed_on=date(2026, 5, 1), warranty_end=date(2026, 7, 1))
    assert due_tasks([d], [], datetime(2026, 5, 31, tzinfo=UTC), CONFIG) == []
    tasks = due_tasks([d], [], datetime(2026, 6, 1, tzinfo=UTC), CONFIG)
    assert [(t.kind, t.rule_id, t.due) for t in tasks] == [
        (TicketKind.WARRANTY, "schedule:warranty-expiry:2026-07-01", date(2026, 6, 1))
    ]
    made = ticket_for(tasks[0], "w1", NOW)
    assert made.kind is TicketKind.WARRANTY and made.rule_id == tasks[0].rule_id
    # Even closed, the ticket for this warranty end means it is never raised again.
    closed = made.model_copy(update={"state": "closed"})
    assert due_tasks([d], [closed], datetime(2026, 6, 20, tzinfo=UTC), CONFIG) == []


def test_long_expired_warranty_is_not_raised() -> None:
    d = device(installed_on=date(2026, 5, 1), warranty_end=date(2026, 1, 1))
    assert due_tasks([d], [], NOW, CONFIG) == []
