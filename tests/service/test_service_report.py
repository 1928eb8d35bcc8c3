"""Half-yearly hospital report: a self-contained HTML page with inline SVG plots and advice."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from contract import AlertEvent, AlertTransition, Severity
from service.lifecycle import FollowUp, Resolve, SignOff
from service.model import Device, Site, Ticket, TicketKind, Tier
from service.report import WarrantyAdviceConfig, half_year, hospital_report, warranty_advice
from service.sla import SlaConfig
from tests.service.factories import T0, accepted, device, hours, on_site, ticket, walk

START, END = half_year(T0.date())  # [2026-01-01, 2026-07-01)
SITE = Site(id="s1", hospital="Hospital s1", region="north")
PLOTS = (
    "Alerts raised per month by severity",
    "Tickets opened per month by tier",
    "SLA attainment per month, response and resolution",
    "Failure rate by model",
    "Failure rate by device age",
)
# Every element a report may contain: HTML structure and what matplotlib writes into an SVG.
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "h3",
    "p",
    "code",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "svg",
    "defs",
    "g",
    "path",
    "rect",
    "clipPath",
    "use",
    "text",
}


def alert(
    device_id: str,
    at: datetime,
    severity: Severity = Severity.CRITICAL,
    transition: AlertTransition = AlertTransition.RAISED,
) -> AlertEvent:
    return AlertEvent(
        device_id=device_id,
        rule_id="r1",
        severity=severity,
        transition=transition,
        at_us=(at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
    )


def report(
    devices: list[Device],
    tickets: list[Ticket],
    alerts: list[AlertEvent] | None = None,
    **kwargs: WarrantyAdviceConfig,
) -> str:
    return hospital_report(
        SITE, devices, tickets, START, END, SlaConfig(), "ab" * 32, alerts=alerts, **kwargs
    )


def section(html: str, heading: str) -> str:
    """The HTML from ``<h2>heading</h2>`` up to the next h2."""
    return html.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]


def rows(html: str) -> list[list[str]]:
    """Body rows of the first table in ``html``, cell texts (still escaped)."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", body)]


def test_half_year_bounds() -> None:
    assert half_year(date(2026, 6, 30)) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 7, 1, tzinfo=UTC),
    )
    assert half_year(date(2026, 7, 1))[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert half_year(date(9999, 12, 31))[1] == datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize("day", [date(1, 1, 1), date(9999, 6, 30), date(9999, 12, 31)])
def test_report_renders_at_the_ends_of_the_calendar(day: date) -> None:
    # The API takes any ?day=; the advice window past year 9999 must not overflow.
    start, end = half_year(day)
    devices = [device("d1", installed_on=date(1, 1, 1), warranty_end=date(9999, 12, 30))]
    html = hospital_report(SITE, devices, [], start, end, SlaConfig(), alerts=[])
    assert html.count("<svg") == len(PLOTS)


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
    html = hospital_report(
        site, devices, [done, other_site, last_year], START, END, SlaConfig(), "ab" * 32
    )
    assert "St &lt;Mary&gt;" in html and "<Mary>" not in html
    assert "<td>tickets opened</td><td>1</td>" in html
    assert "<td>devices installed</td><td>1</td>" in html
    assert "<td>first-time fix</td><td>100.0 % of 1</td>" in html
    assert "4.0 / 5 (1)" in html
    assert "<td>EX-100</td><td>probe</td><td>1</td>" in html
    assert "ab" * 32 in html


def busy_hospital() -> tuple[list[Device], list[Ticket], list[AlertEvent]]:
    devices = [
        device("d1", warranty_end=date(2026, 8, 1)),
        device("d2", model="US-7", installed_on=date(2019, 5, 1)),
    ]
    tickets = [
        walk(on_site(ticket("a"), T0 + hours(1)), (Resolve("probe"), T0 + hours(3))),
        accepted(ticket("b", "d2", Tier.GENERAL, at=T0 + timedelta(days=40)), T0 + hours(999)),
    ]
    alerts = [alert("d1", T0), alert("d2", T0 + timedelta(days=60), Severity.WARNING)]
    return devices, tickets, alerts


def test_page_is_self_contained_with_one_inline_svg_per_plot() -> None:
    html = report(*busy_hospital())
    assert html.count("<svg") == len(PLOTS)
    for label in PLOTS:
        assert html.count(f'<svg class="plot" role="img" aria-label="{label}"') == 1
    # Nothing to fetch: no URLs, no src attributes, no scripts or stylesheets to load, and every
    # reference inside the SVGs points into the page itself.
    assert "http" not in html and "src=" not in html and "//" not in html
    assert set(re.findall(r"<([A-Za-z][\w:-]*)", html)) <= ALLOWED_TAGS
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', html))
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", html))
    # Each plot's text stays text (not glyph outlines), so labels are searchable.
    assert ">Jan 2026</text>" in html and ">US-7</text>" in html


def test_report_is_deterministic() -> None:
    # Pure: same data and period in, same page out (matplotlib's random ids are pinned).
    assert report(*busy_hospital()) == report(*busy_hospital())


def test_monthly_alerts_tickets_and_sla() -> None:
    devices, tickets, alerts = busy_hospital()
    alerts += [
        alert("d1", T0, transition=AlertTransition.CLEARED),  # only raised alerts count
        alert("elsewhere", T0),  # not this hospital's device
        alert("d1", END),  # after the period
    ]
    html = report(devices, tickets, alerts)
    months = rows(section(html, "SLA attainment"))
    assert [m[0] for m in months] == [
        "Jan 2026",
        "Feb 2026",
        "Mar 2026",
        "Apr 2026",
        "May 2026",
        "Jun 2026",
    ]
    # month, alerts info/warning/critical, tickets urgent/general, response, resolution
    assert months[2] == ["Mar 2026", "0/0/1", "1/0", "1/1", "1/1"]
    assert months[3] == ["Apr 2026", "0/0/0", "0/1", "0/1", "0/1"]
    assert months[4][1] == "0/1/0"
    assert "<td>alerts raised</td><td>2</td>" in html


def test_without_alert_history_the_page_says_so_instead_of_plotting_zeros() -> None:
    html = report(*busy_hospital()[:2])
    assert "No alert history was supplied" in html
    assert html.count("<svg") == len(PLOTS) - 1
    assert "<td>alerts raised</td><td>not supplied</td>" in html


def test_failure_rates_count_exposure_inside_the_period_only() -> None:
    # An old device with one failure in the half-year fails 1 / (181 / 365.25) times a year;
    # its eight years before the period must not dilute that.
    devices = [device("d1", installed_on=date(2018, 1, 1))]
    html = report(devices, [ticket("a")], [])
    rates = section(html, "Failure rates")
    by_model, by_age = rates.split("<h3>By device age</h3>")
    assert rows(by_model) == [["EX-100", "1", "1", "0.50", "2.02"]]
    assert rows(by_age)[-1] == ["5y+", "1", "1", "0.50", "2.02"]
    assert rows(by_age)[0] == ["&lt;1y", "0", "0", "0.00", "–"]


def advice_fleet() -> tuple[list[Device], list[Ticket]]:
    """Models A (median rate), B (above the median) and C (never fails); warranties around
    the window [2026-07-01, 2027-01-01) that follows the half-year."""
    devices = [
        device("a1", model="A", warranty_end=date(2026, 7, 1)),  # first day of the window
        device("a2", model="A", warranty_end=date(2026, 12, 31)),  # last day
        device("a3", model="A", warranty_end=date(2027, 1, 1)),  # next report's window
        device("b1", model="B", warranty_end=date(2026, 9, 1)),
        device("c1", model="C", warranty_end=date(2026, 10, 1)),
        device("c2", model="C", warranty_end=date(2026, 6, 30)),  # ended in the period
        device("c3", model="C"),  # no warranty recorded
        device("x1", model="B", site_id="s2", warranty_end=date(2026, 8, 1)),  # other hospital
    ]
    tickets = [
        ticket("t1", "a1", at=T0),
        ticket("t2", "a1", at=T0 + timedelta(days=30)),
        ticket("t3", "b1", at=T0),
        ticket("t4", "a2", at=datetime(2025, 5, 1, tzinfo=UTC)),  # history, not this period
        ticket("t5", "c1", at=T0, kind=TicketKind.PREVENTIVE),  # a ticket, not a failure
        ticket("t6", "x1", at=T0),
        ticket("t7", "x1", at=T0),
    ]
    return devices, tickets


def test_warranty_advice_lists_devices_leaving_warranty_with_the_right_advice() -> None:
    devices, tickets = advice_fleet()
    mine = [d for d in devices if d.site_id == "s1"]
    advice = warranty_advice(mine, tickets, START, END)
    assert [(a.device.id, a.extend) for a in advice] == [
        ("a1", True),  # 2 failures in the half-year, more than 1
        ("b1", True),  # 1 failure, but model B fails above the fleet median
        ("c1", False),  # a preventive ticket is no failure; model C never fails
        ("a2", False),  # model A is the median, not above it; its failure was last year
    ]
    a1, b1, c1, a2 = advice
    assert a1.reasons == ("2 failures in the period (more than 1)",)
    assert a1.model_rate == pytest.approx(a1.fleet_median or 0)
    assert len(b1.reasons) == 1 and b1.reasons[0].startswith("model fails 2.02 per device-year")
    assert (c1.failures, c1.tickets) == (0, 1)
    assert (a2.failures, a2.tickets, [t.id for t in a2.history]) == (0, 0, ["t4"])

    html = report(devices, tickets, [])
    table = rows(section(html, "Extended-warranty advice"))
    assert [(r[0], r[-1].split(":")[0]) for r in table] == [
        ("a1", "extend"),
        ("b1", "extend"),
        ("c1", "no extension needed"),
        ("a2", "no extension needed"),
    ]
    assert table[3][6] == "2025-05-01 r1"  # failure history with date and fault
    assert "<td>warranties ending within 6 months</td><td>4 (2 advised to extend)</td>" in html


def test_failure_threshold_is_configurable() -> None:
    devices, tickets = advice_fleet()
    mine = [d for d in devices if d.site_id == "s1"]
    lenient = warranty_advice(mine, tickets, START, END, WarrantyAdviceConfig(max_failures=2))
    assert [(a.device.id, a.extend) for a in lenient][:2] == [("a1", False), ("b1", True)]
    html = report(devices, tickets, [], warranty=WarrantyAdviceConfig(max_failures=2))
    assert "more than 2 failure(s)" in html


def test_each_warranty_end_is_advised_on_in_exactly_one_half_yearly_report() -> None:
    ends = [date(2026, 1, 1) + timedelta(days=n) for n in range(0, 800, 7)]
    devices = [device(f"d{i}", warranty_end=day) for i, day in enumerate(ends)]
    seen: list[date] = []
    for day in (date(2025, 12, 1), date(2026, 3, 1), date(2026, 9, 1), date(2027, 3, 1)):
        start, end = half_year(day)
        seen += [a.warranty_end for a in warranty_advice(devices, [], start, end)]
    assert sorted(seen) == [d for d in ends if d < date(2028, 1, 1)]


def test_hostile_text_is_escaped_everywhere() -> None:
    evil = '<script>alert("x")</script>'
    model = "<img src=x onerror=1>$\\bad{$"  # 28 characters: shown whole in the plot
    site = Site(id="s1", hospital=f"{evil} & Co", region="<b>north</b>")
    devices = [
        Device.model_validate(
            device(evil, model=model, warranty_end=date(2026, 8, 1)).model_dump()
            | {"serial": '"><svg onload=alert(1)>'}
        )
    ]
    tickets = [
        walk(
            on_site(ticket("a", device_id=evil), T0 + hours(1)),
            (Resolve(f"fault {evil}"), T0 + hours(2)),
        ),
        ticket("b", device_id=evil, at=T0 + hours(5)),
    ]
    html = hospital_report(
        site, devices, tickets, START, END, SlaConfig(), evil, alerts=[alert(evil, T0)]
    )
    assert set(re.findall(r"<([A-Za-z][\w:-]*)", html)) <= ALLOWED_TAGS
    assert not re.search(r"<[^>]*\son\w+\s*=", html)  # no event-handler attribute in any tag
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;b&gt;north&lt;/b&gt;" in html
    # The model name is user text inside the failure-rate plot too, escaped by matplotlib.
    by_model = section(html, "Failure rates").split("<h3>By device age</h3>")[0]
    assert ">&lt;img src=x onerror=1&gt;$\\bad{$</text>" in by_model
    advice = rows(section(html, "Extended-warranty advice"))
    assert advice[0][:3] == [
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;",
        "&lt;img src=x onerror=1&gt;$\\bad{$",
        "&quot;&gt;&lt;svg onload=alert(1)&gt;",
    ]


def test_empty_hospital_renders() -> None:
    html = hospital_report(
        Site(id="empty", hospital="New wing", region="north"),
        [],
        [],
        START,
        END,
        SlaConfig(),
        alerts=[],
    )
    assert html.count("<svg") == len(PLOTS)
    assert "<td>devices installed</td><td>0</td>" in html
    assert "<td>response within SLA</td><td>– of 0</td>" in html
    assert "no warranty ends in this window" in html
    assert "none in this period" in html and "no devices in service in this period" in html
    assert "Audit log head: <code>not given</code>" in html


def test_period_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError, match="aware"):
        hospital_report(SITE, [], [], START.replace(tzinfo=None), END, SlaConfig())
    with pytest.raises(ValueError, match="start < end"):
        hospital_report(SITE, [], [], END, START, SlaConfig())
