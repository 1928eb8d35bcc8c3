"""Writes deploy/grafana/dashboards/*.json, the dashboards Grafana provisions in docker compose.

    python deploy/grafana/dashboards.py

Panels query TimescaleDB (the telemetry tables of infra/telemetry/timescale_schema.py and the
service store's of service/store/postgres_schema.py, one database in compose) or Prometheus.
tests/deploy/test_deploy_dashboards.py runs every SQL query on demo data, checks every PromQL
metric name against promql-metrics.txt and the registries that serve them, and fails when the
JSON files are not what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
SQL = {"type": "grafana-postgresql-datasource", "uid": "vigil-timescaledb"}
PROM = {"type": "prometheus", "uid": "vigil-prometheus"}
OPEN_STATES = "('open', 'dispatched', 'accepted', 'on_site', 'waiting_for_customer')"
# Ticket instants are whole µs since the epoch (service/store/columns.py); indexed, so the
# range is compared on the column rather than through to_timestamp().
US_IN_RANGE = "BETWEEN $__unixEpochFrom()::bigint * 1000000 AND $__unixEpochTo()::bigint * 1000000"

Panel = dict[str, Any]


def sql_panel(title: str, kind: str, sql: str, unit: str = "short", fmt: str = "") -> Panel:
    """A panel of one raw SQL query (``fmt``: time_series for long-format series, else table)."""
    target = {
        "refId": "A",
        "datasource": SQL,
        "editorMode": "code",
        "rawQuery": True,
        "format": fmt or ("time_series" if kind == "timeseries" else "table"),
        "rawSql": " ".join(sql.split()),
    }
    return _panel(title, kind, SQL, [target], unit)


def prom_panel(title: str, exprs: dict[str, str], unit: str = "short") -> Panel:
    """A time series panel of PromQL expressions, by legend."""
    targets = [
        {"refId": chr(65 + i), "datasource": PROM, "expr": expr, "legendFormat": legend}
        for i, (legend, expr) in enumerate(exprs.items())
    ]
    return _panel(title, "timeseries", PROM, targets, unit)


def _panel(title: str, kind: str, source: dict[str, str], targets: list[Any], unit: str) -> Panel:
    return {
        "type": kind,
        "title": title,
        "datasource": source,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def device_variable(name: str, label: str, metric: str) -> dict[str, Any]:
    """A multi-value variable of the devices that reported ``metric`` in the time range."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": SQL,
        "query": " ".join(
            f"""SELECT DISTINCT device_id FROM readings
            WHERE metric = '{metric}' AND $__timeFilter(ts) ORDER BY 1""".split()
        ),
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def dashboard(uid: str, title: str, panels: list[Panel], variables: list[Any]) -> dict[str, Any]:
    """A dashboard laying ``panels`` out two per row."""
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
        panel["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return {
        "uid": uid,
        "title": title,
        "tags": ["vigil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        # The simulated ward replays a day that starts 30 days ago (simulator DEFAULT_START_US).
        "time": {"from": "now-31d", "to": "now"},
        "templating": {"list": variables},
        "panels": panels,
    }


def series(metric: str, variable: str) -> str:
    """One series per device of ``metric``, averaged per interval."""
    return f"""SELECT $__timeGroupAlias(ts, $__interval), device_id AS metric, avg(value) AS value
        FROM readings
        WHERE $__timeFilter(ts) AND metric = '{metric}' AND device_id IN (${variable})
        GROUP BY 1, 2 ORDER BY 1"""


def fleet_overview() -> dict[str, Any]:
    """What reports, what it raised, what is open."""
    return dashboard(
        "vigil-fleet",
        "vigil · fleet overview",
        [
            sql_panel(
                "Devices reporting",
                "stat",
                "SELECT count(DISTINCT device_id) AS devices FROM readings WHERE $__timeFilter(ts)",
            ),
            sql_panel(
                "Open tickets",
                "stat",
                "SELECT count(*) AS open_tickets FROM service_tickets"
                f" WHERE state IN {OPEN_STATES}",
            ),
            sql_panel(
                "Readings stored",
                "timeseries",
                """SELECT $__timeGroupAlias(ts, $__interval), count(*) AS readings FROM readings
                WHERE $__timeFilter(ts) GROUP BY 1 ORDER BY 1""",
            ),
            sql_panel(
                "Alerts raised, by rule",
                "table",
                """SELECT rule_id, count(*) AS raised, max(at) AS last FROM alerts
                WHERE $__timeFilter(at) AND transition = 'raised'
                GROUP BY rule_id ORDER BY raised DESC""",
            ),
            sql_panel(
                "Quietest devices (last reading)",
                "table",
                """SELECT device_id, max(ts) AS last_reading, count(*) AS readings FROM readings
                WHERE $__timeFilter(ts) GROUP BY device_id ORDER BY last_reading LIMIT 50""",
            ),
            sql_panel(
                "Dead letters, by source",
                "timeseries",
                """SELECT $__timeGroupAlias(received_at, $__interval), source AS metric,
                count(*) AS value FROM dead_letters WHERE $__timeFilter(received_at)
                GROUP BY 1, 2 ORDER BY 1""",
            ),
        ],
        [],
    )


def ward_telemetry() -> dict[str, Any]:
    """Per patch: wound pH, wound and skin temperature, exudate, battery."""
    panels = [
        sql_panel("Wound pH", "timeseries", series("wound_ph", "patch"), "none"),
        sql_panel("Wound temperature", "timeseries", series("wound_temp", "patch"), "celsius"),
        sql_panel("Skin temperature", "timeseries", series("skin_temp", "patch"), "celsius"),
        sql_panel("Exudate saturation", "timeseries", series("exudate", "patch"), "percent"),
        sql_panel("Battery", "timeseries", series("battery", "patch"), "percent"),
        sql_panel(
            "Patch alerts",
            "table",
            """SELECT at AS "time", device_id, rule_id, severity, transition, message
            FROM alerts WHERE $__timeFilter(at) AND device_id IN ($patch)
            ORDER BY at DESC LIMIT 200""",
        ),
    ]
    return dashboard(
        "vigil-ward",
        "vigil · ward telemetry",
        panels,
        [device_variable("patch", "Patch", "wound_ph")],
    )


def equipment_health() -> dict[str, Any]:
    """Mains, neutral-to-ground voltage, probe health, error codes."""
    panels = [
        sql_panel("Mains voltage", "timeseries", series("mains_voltage", "equipment"), "volt"),
        sql_panel("N–G voltage", "timeseries", series("ng_voltage", "equipment"), "volt"),
        sql_panel("Probe health", "timeseries", series("probe_health", "equipment"), "percent"),
        sql_panel(
            "Error codes",
            "table",
            """SELECT ts AS "time", device_id, value::integer AS error_code FROM readings
            WHERE $__timeFilter(ts) AND metric = 'error_code' AND value <> 0
            AND device_id IN ($equipment) ORDER BY ts DESC LIMIT 500""",
        ),
        sql_panel(
            "Error codes, by code",
            "table",
            """SELECT value::integer AS error_code, count(*) AS times,
            count(DISTINCT device_id) AS devices FROM readings
            WHERE $__timeFilter(ts) AND metric = 'error_code' AND value <> 0
            AND device_id IN ($equipment) GROUP BY 1 ORDER BY times DESC""",
        ),
        sql_panel(
            "Equipment alerts",
            "table",
            """SELECT at AS "time", device_id, rule_id, severity, transition, message
            FROM alerts WHERE $__timeFilter(at) AND device_id IN ($equipment)
            ORDER BY at DESC LIMIT 200""",
        ),
    ]
    return dashboard(
        "vigil-equipment",
        "vigil · equipment health",
        panels,
        [device_variable("equipment", "Equipment", "mains_voltage")],
    )


def pipeline_health() -> dict[str, Any]:
    """Gateway → ingest throughput, backlog and failures (Prometheus), and what storage holds."""
    rate = "[$__rate_interval]"
    panels = [
        prom_panel(
            "Readings per second",
            {
                "into gateway outboxes": f"sum(rate(vigil_gateway_readings_in_total{rate}))",
                "acked by the broker": f"sum(rate(vigil_gateway_readings_acked_total{rate}))",
                "stored by ingest": f"sum(rate(vigil_ingest_readings_stored_total{rate}))",
                "confirmed to gateways": f"sum(rate(vigil_gateway_readings_confirmed_total{rate}))",
            },
            "reqps",
        ),
        prom_panel(
            "Gateway outbox backlog",
            {"{{instance}}": "sum by (instance) (vigil_gateway_outbox_pending)"},
        ),
        prom_panel(
            "Resends and reconnects",
            {
                "resent on confirm timeout": (
                    f"sum(rate(vigil_gateway_batches_resent_on_timeout_total{rate}))"
                ),
                "uplink reconnects": f"sum(rate(vigil_gateway_uplink_reconnects_total{rate}))",
                "duplicate batches at ingest": (
                    f"sum(rate(vigil_ingest_batches_duplicate_total{rate}))"
                ),
            },
            "ops",
        ),
        prom_panel(
            "Dead letters and storage outages",
            {
                "ingest dead letters ({{kind}})": (
                    f"sum by (kind) (rate(vigil_ingest_dead_letters_total{rate}))"
                ),
                "storage unavailable": "max(vigil_ingest_storage_unavailable)",
            },
        ),
        sql_panel(
            "Batches stored, by gateway",
            "timeseries",
            """SELECT $__timeGroupAlias(ingested_at, $__interval), gateway_id AS metric,
            count(*) AS value FROM ingested_batches WHERE $__timeFilter(ingested_at)
            GROUP BY 1, 2 ORDER BY 1""",
        ),
        sql_panel(
            "Alert events, by transition",
            "timeseries",
            """SELECT $__timeGroupAlias(at, $__interval), transition AS metric, count(*) AS value
            FROM alerts WHERE $__timeFilter(at) GROUP BY 1, 2 ORDER BY 1""",
        ),
        sql_panel(
            "Alerts not yet published",
            "stat",
            "SELECT count(*) AS unpublished FROM alerts WHERE published_at IS NULL",
        ),
        sql_panel(
            "Dead letters, by reason",
            "table",
            """SELECT source, left(reason, 120) AS reason, count(*) AS letters,
            max(received_at) AS last FROM dead_letters WHERE $__timeFilter(received_at)
            GROUP BY 1, 2 ORDER BY letters DESC LIMIT 50""",
        ),
    ]
    return dashboard("vigil-pipeline", "vigil · pipeline health", panels, [])


def sla_and_tickets() -> dict[str, Any]:
    """Tickets by state, tier and engineer; SLA breaches; what falls due next."""
    site = "site_id IN ($site)"
    panels = [
        sql_panel(
            "Tickets by state",
            "table",
            f"""SELECT state, count(*) AS tickets FROM service_tickets WHERE {site}
            GROUP BY state ORDER BY tickets DESC""",
        ),
        sql_panel(
            "Tickets opened, by tier",
            "timeseries",
            f"""SELECT $__timeGroupAlias(to_timestamp(opened_us / 1000000.0), $__interval),
            tier AS metric, count(*) AS value FROM service_tickets
            WHERE opened_us {US_IN_RANGE} AND {site} GROUP BY 1, 2 ORDER BY 1""",
        ),
        sql_panel(
            "SLA breaches in range",
            "table",
            f"""SELECT id, device_id, rule_id, tier, state, assignee,
            to_timestamp(respond_breach_us / 1000000.0) AS respond_breached,
            to_timestamp(resolve_breach_us / 1000000.0) AS resolve_breached
            FROM service_tickets
            WHERE (respond_breach_us {US_IN_RANGE} OR resolve_breach_us {US_IN_RANGE})
            AND {site} ORDER BY coalesce(respond_breach_us, resolve_breach_us) DESC LIMIT 100""",
        ),
        sql_panel(
            "Open tickets, by engineer",
            "table",
            f"""SELECT coalesce(assignee, '(not dispatched)') AS engineer,
            count(*) AS open_tickets FROM service_tickets
            WHERE state IN {OPEN_STATES} AND {site} GROUP BY 1 ORDER BY open_tickets DESC""",
        ),
        sql_panel(
            "Due next",
            "table",
            f"""SELECT id, device_id, tier, state, assignee,
            to_timestamp(due_us / 1000000.0) AS due FROM service_tickets
            WHERE due_us IS NOT NULL AND {site} ORDER BY due_us LIMIT 20""",
        ),
        sql_panel(
            "Response SLA breached (% of tickets opened)",
            "stat",
            f"""SELECT round(100.0 * count(*) FILTER (WHERE respond_breach_us IS NOT NULL)
            / greatest(count(*), 1), 1) AS breached FROM service_tickets
            WHERE opened_us {US_IN_RANGE} AND {site}""",
            "percent",
        ),
    ]
    variable = {
        "name": "site",
        "label": "Site",
        "type": "query",
        "datasource": SQL,
        "query": "SELECT DISTINCT site_id FROM service_tickets"
        " WHERE site_id IS NOT NULL ORDER BY 1",
        "refresh": 1,
        "multi": True,
        "includeAll": True,
        "current": {"text": "All", "value": "$__all"},
    }
    return dashboard("vigil-sla", "vigil · SLA and tickets", panels, [variable])


DASHBOARDS = {
    "fleet-overview": fleet_overview,
    "ward-telemetry": ward_telemetry,
    "equipment-health": equipment_health,
    "pipeline-health": pipeline_health,
    "sla-tickets": sla_and_tickets,
}


def rendered() -> dict[str, str]:
    """Every dashboard file's name and text."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}", file=sys.stderr)
