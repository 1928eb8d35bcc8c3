"""Half-yearly hospital report."""

from __future__ import annotations

from datetime import UTC, date, datetime

from service.lifecycle import FollowUp, Resolve, SignOff
from service.model import Site
from service.report import half_year, hospital_report
from service.sla import SlaConfig
from tests.service.factories import T0, device, hours, on_site, ticket, walk


def test_half_year_bounds() -> None:
    assert half_year(date(2026, 6, 30)) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 7, 1, tzinfo=UTC),
    )
    assert half_year(date(2026, 7, 1))[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_report_covers_only_the_hospital_and_period() -> None:
    site = Site(id="s1", hospital="St <Mary>", region="north")
    devices = [device("d1"), device("d2", site_id="s2")]
    done = walk(
        on_site(ticket("a"), T0 + hours(1)),
        (Resolve("probe"), T0 + hours(2)),
        (SignOff("Nurse", b"r"), T0 + hours(3)),
        (FollowUp(4), T0 + hours(4)),
    )
    other_site = ticket("b", device_id="d2")
    last_year = ticket("c", at=datetime(2025, 3, 1, tzinfo=UTC))
    start, end = half_year(T0.date())
    html = hospital_report(
        site, devices, [done, other_site, last_year], start, end, SlaConfig(), "ab" * 32
    )
    assert "St &lt;Mary&gt;" in html and "<Mary>" not in html
    assert "<td>tickets opened</td><td>1</td>" in html
    assert "<td>devices installed</td><td>1</td>" in html
    assert "<td>first-time fix</td><td>100.0 % of 1</td>" in html
    assert "4.0 / 5 (1)" in html
    assert "<td>EX-100</td><td>probe</td><td>1</td>" in html
    assert "ab" * 32 in html
