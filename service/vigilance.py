"""Adverse-event (vigilance) drafts for tickets where patient harm is suspected; pure.

When someone flags a ticket "patient harm suspected", the manufacturer's vigilance officer must
decide whether to report it to the authority (EU MDR Art. 87 manufacturer incident report, FDA
MDR/MedWatch …) within a deadline counted from awareness. This module drafts that report from
what the desk knows — device and UDI, site, pseudonymous patient, the alert evidence, the
ticket's history, fault and fix — as JSON and as a self-contained HTML page. It is a *draft*:
nothing here is sent anywhere, and the page says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from pydantic import BaseModel, ConfigDict

from service.model import Device, Site, Ticket, UtcDatetime
from service.traceability.model import UdiRecord

# The longest MDR Art. 87 deadline (serious incident, no serious public-health threat or death).
REPORT_WITHIN = timedelta(days=15)


class HarmFlag(BaseModel):
    """Who suspected patient harm on which ticket, when, and what they saw."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str
    flagged_at: UtcDatetime
    flagged_by: str
    description: str


class VigilanceDraft(BaseModel):
    """An initial incident report, to be reviewed before anything is submitted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str = "draft - not submitted"
    report_type: str = "initial"
    drafted_at: UtcDatetime
    awareness_date: UtcDatetime  # when harm was first suspected (the flag)
    report_due: UtcDatetime  # awareness + the longest regulatory deadline
    incident_date: UtcDatetime  # when the ticket opened (the earliest evidence we hold)
    ticket_id: str
    ticket_state: str
    description: str
    reported_by: str
    device: dict[str, Any]
    udi: dict[str, Any] | None
    site: dict[str, Any]
    patient: str | None  # a pseudonym; no identifying data is kept here
    evidence: list[dict[str, Any]]
    history: list[dict[str, Any]]
    fault: str | None
    resolution: str
    parts: list[str]


def draft(
    ticket: Ticket,
    device: Device,
    site: Site,
    flag: HarmFlag,
    udi: UdiRecord | None,
    now: datetime,
) -> VigilanceDraft:
    """The draft report of ``ticket`` as of ``now``."""
    return VigilanceDraft(
        drafted_at=now,
        awareness_date=flag.flagged_at,
        report_due=flag.flagged_at + REPORT_WITHIN,
        incident_date=ticket.opened_at,
        ticket_id=ticket.id,
        ticket_state=str(ticket.state),
        description=flag.description,
        reported_by=flag.flagged_by,
        device={
            "id": device.id,
            "kind": str(device.kind),
            "model": device.model,
            "serial": device.serial,
            "lot": device.lot,
            "firmware": device.firmware,
            "installed_on": device.installed_on.isoformat(),
        },
        udi=None if udi is None else udi.model_dump(mode="json", exclude={"registered_at"}),
        site={"id": site.id, "hospital": site.hospital, "region": site.region},
        patient=device.patient,
        evidence=[
            {
                "at": e.at.isoformat(),
                "severity": e.severity.name.lower(),
                "rule_id": ticket.rule_id,
                "message": e.message,
            }
            for e in ticket.evidence
        ],
        history=[
            {"state": str(c.state), "at": c.at.isoformat(), "note": c.note} for c in ticket.history
        ],
        fault=ticket.fault,
        resolution=ticket.resolution,
        parts=list(ticket.parts),
    )


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(
        f"<tr><th>{escape(k)}</th><td>{escape('' if v is None else str(v))}</td></tr>"
        for k, v in pairs
    )


def _list_table(headers: list[str], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(r.get(h) or ''))}</td>" for h in headers) + "</tr>"
        for r in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #999;padding:.2em .5em;"
    "text-align:left;vertical-align:top}.draft{color:#a00;font-weight:bold}"
)


def render_html(d: VigilanceDraft) -> str:
    """The draft as a self-contained page (no scripts, no links); every value escaped."""
    title = f"Incident report draft, ticket {d.ticket_id}"
    summary = _rows(
        [
            ("status", d.status),
            ("report type", d.report_type),
            ("drafted", d.drafted_at.isoformat()),
            ("awareness (harm suspected)", d.awareness_date.isoformat()),
            ("report due by", d.report_due.isoformat()),
            ("incident (ticket opened)", d.incident_date.isoformat()),
            ("reported by", d.reported_by),
            ("ticket state", d.ticket_state),
            ("patient (pseudonym)", d.patient or "–"),
        ]
    )
    device = _rows(list(d.device.items()) + list((d.udi or {}).items()))
    site = _rows(list(d.site.items()))
    fix = _rows([("fault", d.fault or "–"), ("resolution", d.resolution or "–")])
    fix += _rows([("parts", ", ".join(d.parts) or "–")])
    evidence = _list_table(["at", "severity", "rule_id", "message"], d.evidence)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        '<p class="draft">DRAFT: not submitted to any authority. To be reviewed, completed and'
        " submitted by the vigilance officer.</p>"
        f"<h2>Summary</h2><table>{summary}</table>"
        f"<h2>What was observed</h2><p>{escape(d.description)}</p>"
        f"<h2>Device</h2><table>{device}</table>"
        f"<h2>Site</h2><table>{site}</table>"
        f"<h2>Alert evidence</h2>{evidence}"
        f"<h2>Ticket history</h2>{_list_table(['at', 'state', 'note'], d.history)}"
        f"<h2>Investigation</h2><table>{fix}</table>"
        "</body></html>\n"
    )
