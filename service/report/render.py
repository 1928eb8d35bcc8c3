"""The report model as one self-contained HTML page: inline CSS and SVG, no scripts or links."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from html import escape

from contract import Severity
from service.kpis import FailureRate
from service.model import Tier
from service.report.compute import HospitalReport
from service.report.period import add_months, month_label
from service.report.plots import attainment_plot, rate_plot, stacked_months
from service.report.warranty import WarrantyAdvice
from service.sla import Clock, SlaConfig

_SEVERITY_COLOURS = {
    Severity.INFO: "#8da0cb",
    Severity.WARNING: "#f0a330",
    Severity.CRITICAL: "#c8372d",
}
_TIER_COLOURS = {Tier.URGENT: "#c8372d", Tier.GENERAL: "#4477aa"}
_MAX_HISTORY = 5  # failures listed per device in the warranty advice; older ones are counted

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#222;max-width:980px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
.meta{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.93em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.none{color:#777;font-style:italic}td.date{white-space:nowrap}
svg.plot{display:block;width:100%;max-width:900px;height:auto;margin:.4em 0}
.extend{font-weight:600;color:#a0261d}.rule{color:#555;font-size:.93em}
code{word-break:break-all}
@media print{body{margin:0;max-width:none}svg.plot,table{break-inside:avoid}}
"""

Cell = str | tuple[str, str]  # text, or (text, CSS class)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _cell(cell: Cell) -> str:
    if isinstance(cell, str):
        return f"<td>{escape(cell)}</td>"
    text, css = cell
    return f'<td class="{escape(css)}">{escape(text)}</td>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], empty: str = "none") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="none">{escape(empty)}</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _target(config: SlaConfig, clock: Clock) -> str:
    parts = []
    for tier in Tier:
        hours = config.target(tier, clock) / timedelta(hours=1)
        business = " business" if config.policy(tier).business_hours else ""
        parts.append(f"{tier} {hours:g}{business} h")
    return ", ".join(parts)


def _summary(r: HospitalReport) -> str:
    satisfaction = (
        f"{r.satisfaction.mean:.1f} / 5 ({r.satisfaction.responses})" if r.satisfaction else "–"
    )
    extend = sum(a.extend for a in r.advice)
    return _table(
        ["measure", "value"],
        [
            ["devices installed", str(r.devices)],
            ["alerts raised", "not supplied" if r.alerts_raised is None else str(r.alerts_raised)],
            ["tickets opened", str(r.tickets_opened)],
            ["response within SLA", f"{_pct(r.respond.percent)} of {r.respond.decided}"],
            ["resolution within SLA", f"{_pct(r.resolve.percent)} of {r.resolve.decided}"],
            [
                "first-time fix",
                f"{_pct(r.first_time_fix.percent)} of {r.first_time_fix.denominator}",
            ],
            ["satisfaction", satisfaction],
            ["service credits", _credit_summary(r)],
            [
                f"warranties ending within {r.warranty.horizon_months} months",
                f"{len(r.advice)} ({extend} advised to extend)",
            ],
        ],
    )


def _money(minor: int, currency: str) -> str:
    return f"{minor // 100}.{minor % 100:02d} {currency}"


def _credit_summary(r: HospitalReport) -> str:
    totals = r.credit_totals()
    if not totals:
        return "none"
    return ", ".join(f"{_money(total, cur)} ({n})" for cur, (n, total) in totals.items())


def _credits(r: HospitalReport) -> str:
    rows = [
        [
            c.breach_at.strftime("%Y-%m-%d %H:%M"),
            c.ticket_id,
            f"{c.tier} {c.clock}",
            _money(c.amount_minor, c.currency),
        ]
        for c in r.credits
    ]
    return _table(
        ["breach (UTC)", "ticket", "SLA", "credit"], rows, "no service credits in this period"
    )


def _alerts(r: HospitalReport) -> str:
    if r.alerts_raised is None:
        return '<p class="none">No alert history was supplied for this report.</p>'
    series = [
        (s.name.lower(), _SEVERITY_COLOURS[s], [(m.alerts or {}).get(s, 0) for m in r.months])
        for s in Severity
    ]
    firsts = [m.first_day for m in r.months]
    return stacked_months(
        "alerts", "Alerts raised per month by severity", firsts, series, "alerts raised"
    )


def _tickets(r: HospitalReport) -> str:
    series = [
        (str(tier), _TIER_COLOURS[tier], [m.tickets[tier] for m in r.months])
        for tier in (Tier.URGENT, Tier.GENERAL)
    ]
    firsts = [m.first_day for m in r.months]
    return stacked_months(
        "tickets", "Tickets opened per month by tier", firsts, series, "tickets opened"
    )


def _sla(r: HospitalReport) -> str:
    legends = {
        Clock.RESPOND: f"response ({_target(r.sla, Clock.RESPOND)})",
        Clock.RESOLVE: f"resolution ({_target(r.sla, Clock.RESOLVE)})",
    }
    plot = attainment_plot([m.first_day for m in r.months], [m.sla for m in r.months], legends)
    table = _table(
        [
            "month",
            "alerts (info/warning/critical)",
            "tickets (urgent/general)",
            "response met/decided",
            "resolution met/decided",
        ],
        [
            [
                month_label(m.first_day),
                "–" if m.alerts is None else "/".join(str(m.alerts[s]) for s in Severity),
                f"{m.tickets[Tier.URGENT]}/{m.tickets[Tier.GENERAL]}",
                "{}/{}".format(*m.sla[Clock.RESPOND]),
                "{}/{}".format(*m.sla[Clock.RESOLVE]),
            ]
            for m in r.months
        ],
    )
    return plot + table


def _rate_table(first: str, rates: Sequence[FailureRate]) -> str:
    return _table(
        [first, "devices", "failures", "device-years", "per device-year"],
        [
            [
                r.group,
                str(r.devices),
                str(r.failures),
                f"{r.device_years:.2f}",
                _rate(r.per_device_year),
            ]
            for r in rates
        ],
    )


def _rates(r: HospitalReport) -> str:
    by_model = rate_plot(
        "model", "Failure rate by model", r.model_rates, horizontal=True, median=r.model_median
    )
    by_age = rate_plot(
        "age", "Failure rate by device age", r.age_rates, horizontal=False, median=None
    )
    return (
        f"<h3>By model</h3>{by_model}{_rate_table('model', r.model_rates)}"
        f"<h3>By device age</h3>{by_age}{_rate_table('age', r.age_rates)}"
    )


def _history(advice: WarrantyAdvice) -> str:
    shown = [
        f"{t.opened_at.date()} {t.fault or t.rule_id or 'unspecified'}"
        for t in advice.history[-_MAX_HISTORY:]
    ]
    earlier = len(advice.history) - len(shown)
    return "; ".join(([f"{earlier} earlier"] if earlier else []) + shown) or "none"


def _advice_row(a: WarrantyAdvice) -> list[Cell]:
    return [
        a.device.id,
        a.device.model,
        a.device.serial,
        (str(a.warranty_end), "date"),
        str(a.failures),
        str(a.tickets),
        _history(a),
        _rate(a.model_rate),
        ("extend: " + "; ".join(a.reasons), "extend") if a.extend else "no extension needed",
    ]


def _advice(r: HospitalReport) -> str:
    end, policy = r.end.date(), r.warranty
    rule = (
        f"Devices whose warranty ends between {end} and "
        f"{add_months(end, policy.horizon_months) - timedelta(days=1)}. "
        f"Extend when the device had more than {policy.max_failures} failure(s) (alert or "
        "manual tickets) in this period, or when its model's failure rate in this period is "
        f"above the median of the hospital's models ({_rate(r.model_median)} per device-year)."
    )
    table = _table(
        [
            "device",
            "model",
            "serial",
            "warranty ends",
            "failures (period)",
            "tickets (period)",
            "failure history",
            "model rate",
            "recommendation",
        ],
        [_advice_row(a) for a in r.advice],
        empty="no warranty ends in this window",
    )
    return f'<p class="rule">{escape(rule)}</p>{table}'


def _problems(r: HospitalReport) -> str:
    return _table(
        ["model", "fault", "count", "devices"],
        [[p.model, p.fault, str(p.count), str(p.devices)] for p in r.problems],
    )


def render_report(r: HospitalReport) -> str:
    """The report as a self-contained HTML page."""
    start, end = r.start.date(), r.end.date()
    title = f"Service report {r.site.hospital}, {start} – {end}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">Region {escape(r.site.region)} · tickets opened from {start} up to '
        f"{end} (exclusive), SLA judged as of {end}</p>"
        f"<h2>Summary</h2>{_summary(r)}"
        f"<h2>Alerts</h2>{_alerts(r)}"
        f"<h2>Tickets</h2>{_tickets(r)}"
        f"<h2>SLA attainment</h2>{_sla(r)}"
        f"<h2>Failure rates</h2>{_rates(r)}"
        f"<h2>Extended-warranty advice</h2>{_advice(r)}"
        f"<h2>Problems</h2>{_problems(r)}"
        f"<h2>Service credits</h2>{_credits(r)}"
        f"<p>Audit log head: <code>{escape(r.audit_head or 'not given')}</code></p>"
        "</body></html>\n"
    )
