"""The report's plots: matplotlib figures as inline SVG, text kept as (escaped) text.

Nothing external and nothing random in the output: no XML prologue or DTD, fixed hash salts for
the clip-path ids, so the same report renders to the same bytes.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from html import escape
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.typing import LegendLocType, RcKeyType

from service.kpis import FailureRate
from service.report.period import month_label
from service.sla import Clock

CLOCK_COLOURS = {Clock.RESPOND: "#4477aa", Clock.RESOLVE: "#66aa55"}
# matplotlib's rcParams are process-global; one lock keeps concurrent reports (FastAPI runs sync
# routes in a thread pool) from seeing each other's settings.
_PLOT_LOCK = threading.Lock()


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


def stacked_months(
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
        ax.set_xticks(x, [month_label(m) for m in months])
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if not any(bottom):
            ax.set_ylim(0, 1)
            _no_data(ax, "none in this period")
        _legend(figure, [(legend, colour) for legend, colour, _ in series], "outside right upper")

    return _svg(name, label, 2.6, draw)


def attainment_plot(
    months: Sequence[date],
    monthly: Sequence[Mapping[Clock, tuple[int, int]]],
    legends: Mapping[Clock, str],
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
                color=CLOCK_COLOURS[clock],
            )
            ax.bar_label(bars, [f"{met}/{decided}" for _, met, decided in shown], fontsize=7)
        ax.set_xticks(list(range(len(months))), [month_label(m) for m in months])
        ax.set_xlim(-0.6, len(months) - 0.4)
        ax.set_ylim(0, 112)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.set_ylabel("% within SLA target")
        if not any(m[c][1] for m in monthly for c in Clock):
            _no_data(ax, "no decided SLA clocks in this period")
        entries = [(legends[c], CLOCK_COLOURS[c]) for c in (Clock.RESPOND, Clock.RESOLVE)]
        _legend(figure, entries, "outside upper center", ncols=2)

    return _svg("sla", "SLA attainment per month, response and resolution", 2.6, draw)


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _median_line(figure: Figure, ax: Axes, median: float) -> None:
    ax.axvline(median, color="#333333", linestyle="--", linewidth=1)
    line = Line2D([], [], color="#333333", linestyle="--", linewidth=1)
    figure.legend(
        [line], [f"median of the models {median:.2f}"], loc="outside upper right", frameon=False
    )


def rate_plot(
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
                _median_line(figure, ax, median)
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
