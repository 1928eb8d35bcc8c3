"""Half-yearly HTML service report for one hospital; pure (data and period in, HTML out).

The page is self-contained so it can be mailed or archived: CSS inline, plots drawn by matplotlib
as inline SVG with text kept as (escaped) text, no scripts, no external references.
"""

from __future__ import annotations

import calendar
import io
import re
import statistics
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, timedelta
from html import escape
from typing import Annotated, Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.typing import LegendLocType, RcKeyType
from pydantic import BaseModel, ConfigDict, Field

from contract import AlertEvent, AlertTransition, Severity
from service.kpis import (
    CORRECTIVE,
    FailureRate,
    attainment,
    failure_rate_by_age,
    failure_rate_by_model,
    first_time_fix,
    problem_database,
)
from service.model import Device, Site, Ticket, Tier
from service.sla import Clock, SlaConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SEVERITY_COLOURS = {
    Severity.INFO: "#8da0cb",
    Severity.WARNING: "#f0a330",
    Severity.CRITICAL: "#c8372d",
}
_TIER_COLOURS = {Tier.URGENT: "#c8372d", Tier.GENERAL: "#4477aa"}
_CLOCK_COLOURS = {Clock.RESPOND: "#4477aa", Clock.RESOLVE: "#66aa55"}
_MAX_HISTORY = 5  # failures listed per device in the warranty advice; older ones are counted
# matplotlib's rcParams are process-global; one lock keeps concurrent reports (FastAPI runs sync
# routes in a thread pool) from seeing each other's settings.
_PLOT_LOCK = threading.Lock()


def half_year(day: date) -> tuple[datetime, datetime]:
    """The half-year containing ``day``: [1 Jan, 1 Jul) or [1 Jul, 1 Jan), in UTC.

    The second half of year 9999 ends at ``datetime.max``, as there is no year 10000.
    """
    if day.month <= 6:
        return datetime(day.year, 1, 1, tzinfo=UTC), datetime(day.year, 7, 1, tzinfo=UTC)
    end = datetime(day.year + 1, 1, 1, tzinfo=UTC) if day.year < MAXYEAR else _LAST
    return datetime(day.year, 7, 1, tzinfo=UTC), end


class WarrantyAdviceConfig(BaseModel):
    """Which warranties the report looks at and when it advises extending them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Warranties ending in [end of the period, end + horizon) are advised on; with six months
    # and half-yearly reports every warranty end falls in exactly one report.
    horizon_months: Annotated[int, Field(ge=1, le=120)] = 6
    # Extend when the device had more failures than this in the reporting period.
    max_failures: Annotated[int, Field(ge=0)] = 1


@dataclass(frozen=True, slots=True)
class WarrantyAdvice:
    """Advice for one device whose warranty ends soon after the reporting period."""

    device: Device
    warranty_end: date
    failures: int  # corrective tickets opened in the period
    tickets: int  # tickets of any kind opened in the period
    history: tuple[Ticket, ...]  # corrective tickets opened before the period's end, oldest first
    model_rate: float | None  # the model's failures per device-year in the period
    fleet_median: float | None  # median of the per-model rates of the hospital's fleet
    extend: bool
    reasons: tuple[str, ...]


def _add_months(day: date, months: int) -> date:
    """``day`` moved by whole months, clamped to the end of a shorter month (and of time)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    if year > MAXYEAR:
        return date.max
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def _utc_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    # Months and dates are taken in UTC, like every instant of the service domain.
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ValueError("the period needs aware datetimes with start < end")
    return start.astimezone(UTC), end.astimezone(UTC)


def _us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _months(start: datetime, end: datetime) -> list[date]:
    """First days of the months the period [start, end) touches."""
    last = (end - timedelta(microseconds=1)).date()
    first_index, last_index = start.year * 12 + start.month - 1, last.year * 12 + last.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(first_index, last_index + 1)]


def _month_label(month: date) -> str:
    return f"{_MONTHS[month.month - 1]} {month.year}"


def _fault(ticket: Ticket) -> str:
    return ticket.fault or ticket.rule_id or "unspecified"


def _period_rates_by_model(
    fleet: Sequence[Device], failures: Sequence[Ticket], start: datetime, end: datetime
) -> list[FailureRate]:
    # kpis count exposure from installation; clipping installation to the period start turns it
    # into the device-years spent in the period, matching failures counted in the period.
    clipped = [
        d.model_copy(update={"installed_on": max(d.installed_on, start.date())}) for d in fleet
    ]
    return failure_rate_by_model(clipped, failures, end)


def _period_rates_by_age(
    fleet: Sequence[Device], failures: Sequence[Ticket], start: datetime, end: datetime
) -> list[FailureRate]:
    # Device-years spent in each band during the period = exposure up to end - up to start.
    exposure: defaultdict[str, float] = defaultdict(float)
    population: Counter[str] = Counter()
    for device in fleet:
        before = failure_rate_by_age([device], (), start)
        after = failure_rate_by_age([device], (), end)
        for old, new in zip(before, after, strict=True):
            spent = new.device_years - old.device_years
            exposure[new.group] += spent
            population[new.group] += spent > 0
    return [
        FailureRate(r.group, population[r.group], r.failures, exposure[r.group])
        for r in failure_rate_by_age(fleet, failures, end)
    ]


def _median_rate(rates: Iterable[FailureRate]) -> float | None:
    known = [r.per_device_year for r in rates if r.per_device_year is not None]
    return statistics.median(known) if known else None


def warranty_advice(
    devices: Iterable[Device],
    tickets: Iterable[Ticket],
    start: datetime,
    end: datetime,
    config: WarrantyAdviceConfig | None = None,
) -> list[WarrantyAdvice]:
    """Devices whose warranty ends in [end, end + horizon), each with its advice.

    Extend when the device had more than ``max_failures`` failures (alert or manual tickets)
    opened in [start, end), or when its model's failure rate in that period is above the median
    of the per-model rates of ``devices``. Sorted by warranty end, then device id.
    """
    start, end = _utc_period(start, end)
    policy = config or WarrantyAdviceConfig()
    fleet = [d for d in devices if d.installed_on < end.date()]
    ids = {d.id for d in fleet}
    mine = [t for t in tickets if t.device_id in ids and t.opened_at < end]
    failures = [t for t in mine if t.kind in CORRECTIVE]
    period_failures = [t for t in failures if t.opened_at >= start]
    rates = _period_rates_by_model(fleet, period_failures, start, end)
    rate_of = {r.group: r.per_device_year for r in rates}
    median = _median_rate(rates)
    horizon = _add_months(end.date(), policy.horizon_months)
    failed = Counter(t.device_id for t in period_failures)
    opened = Counter(t.device_id for t in mine if t.opened_at >= start)
    advice = []
    for device in fleet:
        warranty_end = device.warranty_end
        if warranty_end is None or not end.date() <= warranty_end < horizon:
            continue
        rate = rate_of.get(device.model)
        reasons = []
        if failed[device.id] > policy.max_failures:
            reasons.append(
                f"{failed[device.id]} failures in the period (more than {policy.max_failures})"
            )
        if rate is not None and median is not None and rate > median:
            reasons.append(f"model fails {rate:.2f} per device-year, fleet median {median:.2f}")
        history = sorted(
            (t for t in failures if t.device_id == device.id), key=lambda t: (t.opened_at, t.id)
        )
        advice.append(
            WarrantyAdvice(
                device=device,
                warranty_end=warranty_end,
                failures=failed[device.id],
                tickets=opened[device.id],
                history=tuple(history),
                model_rate=rate,
                fleet_median=median,
                extend=bool(reasons),
                reasons=tuple(reasons),
            )
        )
    return sorted(advice, key=lambda a: (a.warranty_end, a.device.id))


# --- plots -----------------------------------------------------------------------------------


def _svg(name: str, label: str, height: float, draw: Callable[[Figure], None]) -> str:
    """One figure drawn by ``draw``, as an inline <svg> element with nothing external in it."""
    buffer = io.StringIO()
    # A fixed salt per plot makes the clip-path ids (and so the whole page) deterministic.
    settings: dict[RcKeyType, Any] = {
        "svg.fonttype": "none",  # text stays text: small, selectable, escaped by matplotlib
        "svg.hashsalt": f"vigil-{name}",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    with _PLOT_LOCK, matplotlib.rc_context(settings):
        figure = Figure(figsize=(7.2, height), layout="constrained")
        draw(figure)
        no_metadata: dict[str, str | None] = dict.fromkeys(("Creator", "Date", "Format", "Type"))
        figure.savefig(buffer, format="svg", metadata=no_metadata)
    text = buffer.getvalue()
    # Drop the XML prologue and DTD (remote URL), the namespace URIs (an HTML parser does not
    # need them) and the fixed pixel size (the page scales the plot), and the per-figure group
    # ids, which would repeat across the plots of one page.
    svg = text[text.index("<svg") :]
    svg = re.sub(
        r"<svg\b[^>]*>",
        lambda m: (
            f'<svg class="plot" role="img" aria-label="{escape(label)}" '
            f'viewBox="{_viewbox(m.group(0))}"><title>{escape(label)}</title>'
        ),
        svg,
        count=1,
    )
    return re.sub(r'<g id="[^"]*"', "<g", svg).strip()


def _viewbox(tag: str) -> str:
    found = re.search(r'viewBox="([^"]*)"', tag)
    if found is None:  # matplotlib always writes one; refuse rather than emit an unscaled plot
        raise ValueError("matplotlib SVG without viewBox")
    return found.group(1)


def _legend(
    figure: Figure, entries: Sequence[tuple[str, str]], loc: LegendLocType, ncols: int = 1
) -> None:
    # Explicit handles, so the legend keeps its colours when a series has no bars at all.
    handles = [Patch(color=colour, label=label) for label, colour in entries]
    figure.legend(handles=handles, loc=loc, ncols=ncols, frameon=False)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777777")


def _stacked_months(
    name: str,
    label: str,
    months: Sequence[date],
    series: Sequence[tuple[str, str, Sequence[int]]],
    ylabel: str,
) -> str:
    """Stacked bars per month; ``series`` is (legend, colour, count per month)."""

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        x = list(range(len(months)))
        bottom = [0] * len(months)
        for legend, colour, values in series:
            ax.bar(x, values, 0.6, bottom=bottom, label=legend, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xticks(x, [_month_label(m) for m in months])
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if not any(bottom):
            ax.set_ylim(0, 1)
            _no_data(ax, "none in this period")
        _legend(figure, [(legend, colour) for legend, colour, _ in series], "outside right upper")

    return _svg(name, label, 2.6, draw)


def _attainment_plot(
    months: Sequence[date],
    monthly: Sequence[dict[Clock, tuple[int, int]]],
    legends: dict[Clock, str],
) -> str:
    """Grouped bars: % of decided clocks within target per month, labelled met/decided."""

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        width = 0.38
        for offset, clock in ((-width / 2, Clock.RESPOND), (width / 2, Clock.RESOLVE)):
            shown = [(i, *m[clock]) for i, m in enumerate(monthly) if m[clock][1]]
            bars = ax.bar(
                [i + offset for i, _, _ in shown],
                [100.0 * met / decided for _, met, decided in shown],
                width,
                label=legends[clock],
                color=_CLOCK_COLOURS[clock],
            )
            ax.bar_label(bars, [f"{met}/{decided}" for _, met, decided in shown], fontsize=7)
        ax.set_xticks(list(range(len(months))), [_month_label(m) for m in months])
        ax.set_xlim(-0.6, len(months) - 0.4)
        ax.set_ylim(0, 112)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.set_ylabel("% within SLA target")
        if not any(m[c][1] for m in monthly for c in Clock):
            _no_data(ax, "no decided SLA clocks in this period")
        entries = [(legends[c], _CLOCK_COLOURS[c]) for c in (Clock.RESPOND, Clock.RESOLVE)]
        _legend(figure, entries, "outside upper center", ncols=2)

    return _svg("sla", "SLA attainment per month, response and resolution", 2.6, draw)


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rate_plot(
    name: str, label: str, rates: Sequence[FailureRate], horizontal: bool, median: float | None
) -> str:
    """Failures per device-year per group; groups without exposure are left out."""
    shown = [(r.group, r.per_device_year) for r in rates if r.per_device_year is not None]

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        positions = list(range(len(shown)))
        values = [v for _, v in shown]
        # Group names may be user text (models): no mathtext, so "$" cannot break rendering.
        names = [_short(g) for g, _ in shown]
        if horizontal:
            ax.barh(positions, values, 0.6, color="#4477aa")
            ax.set_yticks(positions, names, parse_math=False)
            ax.invert_yaxis()
            ax.set_xlabel("failures per device-year in the period")
            if median is not None:
                ax.axvline(median, color="#333333", linestyle="--", linewidth=1)
                line = Line2D([], [], color="#333333", linestyle="--", linewidth=1)
                figure.legend(
                    [line],
                    [f"median of the models {median:.2f}"],
                    loc="outside upper right",
                    frameon=False,
                )
        else:
            ax.bar(positions, values, 0.6, color="#4477aa")
            ax.set_xticks(positions, names, parse_math=False)
            ax.set_ylabel("failures per device-year")
        if not shown:
            ax.set_xticks([])
            ax.set_yticks([])
            _no_data(ax, "no devices in service in this period")

    height = 1.2 + 0.3 * len(shown) if horizontal else 2.4
    return _svg(name, label, max(height, 1.8), draw)


# --- page ------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


Cell = str | tuple[str, str]  # text, or (text, CSS class)


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


def _history(advice: WarrantyAdvice) -> str:
    shown = [f"{t.opened_at.date()} {_fault(t)}" for t in advice.history[-_MAX_HISTORY:]]
    earlier = len(advice.history) - len(shown)
    return "; ".join(([f"{earlier} earlier"] if earlier else []) + shown) or "none"


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


def hospital_report(
    site: Site,
    devices: Iterable[Device],
    tickets: Iterable[Ticket],
    start: datetime,
    end: datetime,
    config: SlaConfig,
    audit_head: str = "",
    *,
    alerts: Iterable[AlertEvent] | None = None,
    warranty: WarrantyAdviceConfig | None = None,
) -> str:
    """The self-contained HTML report of ``site`` for [start, end), judged as of ``end``.

    ``alerts`` are the alert events of any devices (those of the site's are used); None means no
    alert history is available and the page says so rather than plotting zeros.
    """
    start, end = _utc_period(start, end)
    config = config.for_site(site.id)  # its tickets keep the site's business calendar
    policy = warranty or WarrantyAdviceConfig()
    fleet = [d for d in devices if d.site_id == site.id and d.installed_on < end.date()]
    ids = {d.id for d in fleet}
    mine = [t for t in tickets if t.device_id in ids and t.opened_at < end]
    period = [t for t in mine if t.opened_at >= start]
    period_failures = [t for t in period if t.kind in CORRECTIVE]
    months = _months(start, end)
    month_of = {(m.year, m.month): i for i, m in enumerate(months)}

    def slot(at: datetime) -> int:
        return month_of[(at.year, at.month)]

    respond = attainment(period, Clock.RESPOND, end, config)
    resolve = attainment(period, Clock.RESOLVE, end, config)
    ftf = first_time_fix(period)
    scores = [t.satisfaction for t in period if t.satisfaction is not None]
    satisfaction = f"{sum(scores) / len(scores):.1f} / 5 ({len(scores)})" if scores else "–"
    model_rates = _period_rates_by_model(fleet, period_failures, start, end)
    age_rates = _period_rates_by_age(fleet, period_failures, start, end)
    median = _median_rate(model_rates)
    advice = warranty_advice(fleet, mine, start, end, policy)

    by_tier = {tier: [0] * len(months) for tier in Tier}
    for t in period:
        by_tier[t.tier][slot(t.opened_at)] += 1
    monthly: list[dict[Clock, tuple[int, int]]] = []
    for i in range(len(months)):
        opened = [t for t in period if slot(t.opened_at) == i]
        judged = {c: attainment(opened, c, end, config) for c in Clock}
        monthly.append({c: (a.met, a.decided) for c, a in judged.items()})

    raised: list[AlertEvent] | None = None
    by_severity = {s: [0] * len(months) for s in Severity}
    if alerts is not None:
        low, high = _us(start), _us(end)
        raised = [
            a
            for a in alerts
            if a.device_id in ids
            and a.transition is AlertTransition.RAISED
            and low <= a.at_us < high
        ]
        for a in raised:
            by_severity[a.severity][slot(_EPOCH + timedelta(microseconds=a.at_us))] += 1

    extend = sum(a.extend for a in advice)
    summary = _table(
        ["measure", "value"],
        [
            ["devices installed", str(len(fleet))],
            ["alerts raised", "not supplied" if raised is None else str(len(raised))],
            ["tickets opened", str(len(period))],
            ["response within SLA", f"{_pct(respond.percent)} of {respond.decided}"],
            ["resolution within SLA", f"{_pct(resolve.percent)} of {resolve.decided}"],
            ["first-time fix", f"{_pct(ftf.percent)} of {ftf.denominator}"],
            ["satisfaction", satisfaction],
            [
                f"warranties ending within {policy.horizon_months} months",
                f"{len(advice)} ({extend} advised to extend)",
            ],
        ],
    )

    if raised is None:
        alerts_section = '<p class="none">No alert history was supplied for this report.</p>'
    else:
        alerts_section = _stacked_months(
            "alerts",
            "Alerts raised per month by severity",
            months,
            [(s.name.lower(), _SEVERITY_COLOURS[s], by_severity[s]) for s in Severity],
            "alerts raised",
        )
    tickets_plot = _stacked_months(
        "tickets",
        "Tickets opened per month by tier",
        months,
        [(str(tier), _TIER_COLOURS[tier], by_tier[tier]) for tier in (Tier.URGENT, Tier.GENERAL)],
        "tickets opened",
    )
    legends = {
        Clock.RESPOND: f"response ({_target(config, Clock.RESPOND)})",
        Clock.RESOLVE: f"resolution ({_target(config, Clock.RESOLVE)})",
    }
    sla_plot = _attainment_plot(months, monthly, legends)
    month_table = _table(
        [
            "month",
            "alerts (info/warning/critical)",
            "tickets (urgent/general)",
            "response met/decided",
            "resolution met/decided",
        ],
        [
            [
                _month_label(m),
                "–" if raised is None else "/".join(str(by_severity[s][i]) for s in Severity),
                f"{by_tier[Tier.URGENT][i]}/{by_tier[Tier.GENERAL][i]}",
                "{}/{}".format(*monthly[i][Clock.RESPOND]),
                "{}/{}".format(*monthly[i][Clock.RESOLVE]),
            ]
            for i, m in enumerate(months)
        ],
    )
    model_plot = _rate_plot(
        "model", "Failure rate by model", model_rates, horizontal=True, median=median
    )
    model_table = _table(
        ["model", "devices", "failures", "device-years", "per device-year"],
        [
            [
                r.group,
                str(r.devices),
                str(r.failures),
                f"{r.device_years:.2f}",
                _rate(r.per_device_year),
            ]
            for r in model_rates
        ],
    )
    age_plot = _rate_plot(
        "age", "Failure rate by device age", age_rates, horizontal=False, median=None
    )
    age_table = _table(
        ["age", "devices", "failures", "device-years", "per device-year"],
        [
            [
                r.group,
                str(r.devices),
                str(r.failures),
                f"{r.device_years:.2f}",
                _rate(r.per_device_year),
            ]
            for r in age_rates
        ],
    )
    advice_table = _table(
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
        [
            [
                a.device.id,
                a.device.model,
                a.device.serial,
                (str(a.warranty_end), "date"),
                str(a.failures),
                str(a.tickets),
                _history(a),
                _rate(a.model_rate),
                ("extend: " + "; ".join(a.reasons), "extend")
                if a.extend
                else "no extension needed",
            ]
            for a in advice
        ],
        empty="no warranty ends in this window",
    )
    rule = (
        f"Devices whose warranty ends between {end.date()} and "
        f"{_add_months(end.date(), policy.horizon_months) - timedelta(days=1)}. "
        f"Extend when the device had more than {policy.max_failures} failure(s) (alert or "
        "manual tickets) in this period, or when its model's failure rate in this period is "
        f"above the median of the hospital's models ({_rate(median)} per device-year)."
    )
    problems = _table(
        ["model", "fault", "count", "devices"],
        [[p.model, p.fault, str(p.count), str(p.devices)] for p in problem_database(fleet, period)],
    )
    title = f"Service report {site.hospital}, {start.date()} – {end.date()}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">Region {escape(site.region)} · tickets opened from {start.date()} up to '
        f"{end.date()} (exclusive), SLA judged as of {end.date()}</p>"
        f"<h2>Summary</h2>{summary}"
        f"<h2>Alerts</h2>{alerts_section}"
        f"<h2>Tickets</h2>{tickets_plot}"
        f"<h2>SLA attainment</h2>{sla_plot}{month_table}"
        f"<h2>Failure rates</h2><h3>By model</h3>{model_plot}{model_table}"
        f"<h3>By device age</h3>{age_plot}{age_table}"
        f'<h2>Extended-warranty advice</h2><p class="rule">{escape(rule)}</p>{advice_table}'
        f"<h2>Problems</h2>{problems}"
        f"<p>Audit log head: <code>{escape(audit_head or 'not given')}</code></p>"
        "</body></html>\n"
    )
