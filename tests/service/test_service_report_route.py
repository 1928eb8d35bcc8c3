"""The report route reads narrow device rows and only the tickets it needs: same page as the
pure report over every document of the site."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from service.api.context import Telemetry
from service.api.routes import reports
from service.api.routes.reports import _report
from service.lifecycle import Resolve
from service.model import TicketKind
from service.report import half_year, hospital_report
from service.sla import SlaConfig
from service.store import PostgresStore, ServiceStore, SqliteStore
from service.store.queries import CreditQuery
from tests.service.factories import T0, device, hours, on_site, site, ticket, walk

START, END = half_year(T0.date())  # [2026-01-01, 2026-07-01)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[ServiceStore]:
    db: ServiceStore
    if request.param == "postgres":
        db = PostgresStore(request.getfixturevalue("timescale_dsn"))
    else:
        db = SqliteStore(":memory:")
    yield db
    db.close()


def _at(year: int, month: int, day: int = 10) -> datetime:
    return datetime(year, month, day, 9, tzinfo=UTC)


def _seed(store: ServiceStore) -> None:
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    for d in (
        device("d1", warranty_end=date(2026, 8, 1)),  # advised: its history counts
        device("d2", model="EX-200", warranty_end=date(2028, 1, 1)),
        device("d3", model="EX-200"),
        device("d4", installed_on=date(2026, 9, 1), warranty_end=date(2026, 9, 30)),
        device("d5", model="EX-300", warranty_end=date(2026, 12, 31)),  # advised too
        device("d9", site_id="s2", warranty_end=date(2026, 8, 1)),
    ):
        store.put_device(d)
    fixed = Resolve("probe cable", "replaced", ("P-1",))
    for n, (device_id, at, kind) in enumerate(
        (
            ("d1", _at(2025, 3), TicketKind.ALERT),
            ("d1", _at(2025, 10), TicketKind.MANUAL),
            ("d1", _at(2025, 11), TicketKind.PREVENTIVE),
            ("d2", _at(2025, 12), TicketKind.ALERT),
            ("d1", _at(2026, 1, 1), TicketKind.ALERT),
            ("d1", _at(2026, 3), TicketKind.ALERT),
            ("d2", _at(2026, 4), TicketKind.MANUAL),
            ("d3", _at(2026, 6, 30), TicketKind.ALERT),
            ("d9", _at(2026, 2), TicketKind.ALERT),
            ("d1", _at(2026, 7, 2), TicketKind.ALERT),
            ("d5", _at(2024, 6), TicketKind.MANUAL),
        )
    ):
        made = ticket(f"t{n}", device_id=device_id, at=at, kind=kind)
        if n % 2:
            made = walk(on_site(made, at + hours(1)), (fixed, at + hours(5)))
        store.put_ticket(made)


@pytest.mark.parametrize("ids_per_query", [500, 1])
def test_the_route_renders_what_the_pure_report_does_over_every_document(
    store: ServiceStore, ids_per_query: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports, "_IDS_PER_QUERY", ids_per_query)
    _seed(store)
    s1 = store.site("s1")
    assert s1 is not None
    sla = SlaConfig()
    html = _report(store, Telemetry(None), sla, s1, T0.date())
    head = store.audit_head()
    expected = hospital_report(
        s1,
        store.devices(),
        store.tickets(),
        START,
        END,
        sla,
        head.hash if head else "",
        credits=store.credits(CreditQuery()),
    )
    assert html == expected
    assert "d1" in html and "2 earlier" not in html  # d1's advice lists its failure history
    assert "2025-03-10" in html and "2025-10-10" in html and "2024-06-10" in html
