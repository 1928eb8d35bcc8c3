"""Half-yearly HTML service report for one hospital; pure (data and period in, HTML out).

``compute`` turns store data into a typed ``HospitalReport``; ``render`` (with ``plots``) turns
that into a self-contained page: CSS inline, plots drawn by matplotlib as inline SVG with text
kept as (escaped) text, no scripts, no external references.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from contract import AlertEvent
from service.compensation import ServiceCredit
from service.kpis import InstalledDevice
from service.model import Site, Ticket
from service.report.compute import HospitalReport, Month, Satisfaction, compute_report
from service.report.period import half_year
from service.report.render import render_report
from service.report.warranty import WarrantyAdvice, WarrantyAdviceConfig, warranty_advice
from service.sla import SlaConfig

__all__ = [
    "HospitalReport",
    "Month",
    "Satisfaction",
    "WarrantyAdvice",
    "WarrantyAdviceConfig",
    "compute_report",
    "half_year",
    "hospital_report",
    "render_report",
    "warranty_advice",
]


def hospital_report(
    site: Site,
    devices: Iterable[InstalledDevice],
    tickets: Iterable[Ticket],
    start: datetime,
    end: datetime,
    config: SlaConfig,
    audit_head: str = "",
    *,
    alerts: Iterable[AlertEvent] | None = None,
    warranty: WarrantyAdviceConfig | None = None,
    credits: Iterable[ServiceCredit] = (),
) -> str:
    """The self-contained HTML report of ``site`` for [start, end), judged as of ``end``.

    ``alerts`` are the alert events of any devices (those of the site's are used); None means no
    alert history is available and the page says so rather than plotting zeros.
    """
    report = compute_report(
        site,
        devices,
        tickets,
        start,
        end,
        config,
        audit_head,
        alerts=alerts,
        warranty=warranty,
        credits=credits,
    )
    return render_report(report)
