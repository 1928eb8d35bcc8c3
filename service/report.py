"""Half-yearly HTML service report for one hospital; pure (data and period in, HTML out)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from html import escape

from service.kpis import (
    attainment,
    failure_rate_by_model,
    first_time_fix,
    problem_database,
)
from service.model import Device, Site, Ticket
from service.sla import Clock, SlaConfig


def half_year(day: date) -> tuple[datetime, datetime]:
    """The half-year containing ``day``: [1 Jan, 1 Jul) or [1 Jul, 1 Jan), in UTC."""
    if day.month <= 6:
        return datetime(day.year, 1, 1, tzinfo=UTC), datetime(day.year, 7, 1, tzinfo=UTC)
    return datetime(day.year, 7, 1, tzinfo=UTC), datetime(day.year + 1, 1, 1, tzinfo=UTC)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def hospital_report(
    site: Site,
    devices: Iterable[Device],
    tickets: Iterable[Ticket],
    start: datetime,
    end: datetime,
    config: SlaConfig,
    audit_head: str = "",
) -> str:
    """The report of ``site`` for tickets opened in [start, end), judged as of ``end``."""
    fleet = [d for d in devices if d.site_id == site.id]
    ids = {d.id for d in fleet}
    period = [t for t in tickets if t.device_id in ids and start <= t.opened_at < end]
    respond = attainment(period, Clock.RESPOND, end, config)
    resolve = attainment(period, Clock.RESOLVE, end, config)
    ftf = first_time_fix(period)
    scores = [t.satisfaction for t in period if t.satisfaction is not None]
    satisfaction = f"{sum(scores) / len(scores):.1f} / 5 ({len(scores)})" if scores else "–"
    summary = _table(
        ["measure", "value"],
        [
            ["devices installed", str(len(fleet))],
            ["tickets opened", str(len(period))],
            ["response within SLA", f"{_pct(respond.percent)} of {respond.decided}"],
            ["resolution within SLA", f"{_pct(resolve.percent)} of {resolve.decided}"],
            ["first-time fix", f"{_pct(ftf.percent)} of {ftf.denominator}"],
            ["satisfaction", satisfaction],
        ],
    )
    rates = _table(
        ["model", "devices", "failures", "per device-year"],
        [
            [r.group, str(r.devices), str(r.failures),
             "–" if r.per_device_year is None else f"{r.per_device_year:.2f}"]
            for r in failure_rate_by_model(fleet, period, end)
        ],
    )  # fmt: skip
    problems = _table(
        ["model", "fault", "count", "devices"],
        [[p.model, p.fault, str(p.count), str(p.devices)] for p in problem_database(fleet, period)],
    )
    title = f"Service report {site.hospital}, {start.date()} – {end.date()}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head><body>"
        f"<h1>{escape(title)}</h1><p>Region {escape(site.region)}</p>"
        f"<h2>Summary</h2>{summary}<h2>Failure rate by model</h2>{rates}"
        f"<h2>Problems</h2>{problems}"
        f"<p>Audit log head: <code>{escape(audit_head or 'not given')}</code></p>"
        "</body></html>\n"
    )
