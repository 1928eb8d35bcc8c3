"""The Grafana dashboards work: every SQL panel and variable query runs on TimescaleDB with demo
data (Grafana's macros expanded as its PostgreSQL data source does) and finds rows; every PromQL
metric is listed in promql-metrics.txt and served by its stage's registry."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import psycopg
import pytest
import yaml

from contract import Batch, Reading
from contract.equipment import equipment_readings
from gateway.counters import GatewayCounters
from infra.telemetry.base import DeadLetter
from infra.telemetry.timescale import TimescaleStore
from infra.time_us import datetime_from_us, now_us
from ingest.counters import IngestCounters
from rules import RuleEngine, load_pack
from service.desk import intake_alert
from service.model import OPEN_STATES
from service.sla import SlaConfig
from service.store import PostgresStore
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec
from tests.deploy.compose import ROOT
from tests.servers import PrivatePostgres
from tests.service.live import fresh_database
from vigil.demo import demo_faults, seed_service

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vigil_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _targets(source: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dashboard, panel title, target) of every panel target of datasource type ``source``."""
    for name, board in _dashboards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == source:
                    yield name, panel["title"], target


SQL_SOURCE = "grafana-postgresql-datasource"


# --- Grafana's macros, as its PostgreSQL data source (TimescaleDB on) expands them -----------


def _macro(sql: str, name: str, expand: Callable[[list[str]], str]) -> str:
    """Replace every ``$name(args)`` (arguments may nest parentheses) with ``expand(args)``."""
    head = f"${name}("
    while (start := sql.find(head)) >= 0:
        depth, i, args, arg_start = 1, start + len(head), [], start + len(head)
        while depth:
            ch = sql[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(sql[arg_start:i].strip())
                arg_start = i + 1
            i += 1
        args.append(sql[arg_start : i - 1].strip())
        sql = sql[:start] + expand([a for a in args if a]) + sql[i:]
    return sql


def expand(sql: str, start: datetime, end: datetime, variables: dict[str, list[str]]) -> str:
    """``sql`` as Grafana sends it for the range [start, end] at ~1000 points per panel."""
    interval = f"{max(1, int((end - start).total_seconds() / 1000))}s"
    sql = _macro(sql, "__timeGroupAlias", lambda a: f"time_bucket('{interval}', {a[0]}) AS time")
    sql = _macro(sql, "__timeGroup", lambda a: f"time_bucket('{interval}', {a[0]})")
    between = f"BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
    sql = _macro(sql, "__timeFilter", lambda a: f"{a[0]} {between}")
    sql = sql.replace("$__unixEpochFrom()", str(int(start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(end.timestamp())))
    sql = sql.replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):  # "All": every value, quoted
        quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in variables[name])
        sql = sql.replace(f"${{{name}}}", quoted).replace(f"${name}", quoted)
    assert "$" not in sql, f"an unexpanded macro or variable in: {sql}"
    return sql


def test_macros_expand_as_grafana_does() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    sql = expand(
        "SELECT $__timeGroupAlias(to_timestamp(x / 1e6), $__interval) WHERE $__timeFilter(ts)"
        " AND d IN ($dev) AND e > $__unixEpochFrom()",
        start,
        end,
        {"dev": ["a", "o'b"]},
    )
    assert sql == (
        "SELECT time_bucket('86s', to_timestamp(x / 1e6)) AS time WHERE ts BETWEEN "
        "'2026-01-01T00:00:00+00:00' AND '2026-01-02T00:00:00+00:00' AND d IN ('a', 'o''b') "
        "AND e > 1767225600"
    )


# --- the demo data ----------------------------------------------------------------------------

TICK_S = 600.0
TICKS = 288  # two simulated days, ten minutes apart


def _demo_fleet() -> Fleet:
    """The demo's faults (an infection, a detached patch, a mains sag) and three equipment ones."""
    faults = (
        *demo_faults(),
        Fault("endo-001", FaultKind.ERROR_BURST, start_s=6 * 3600, duration_s=6 * 3600),
        Fault("us-002", FaultKind.NG_FAULT, start_s=8 * 3600),
        Fault("endo-003", FaultKind.PROBE_DEGRADATION, start_s=0),
    )
    return Fleet(FleetSpec(patches=8, equipment=4, tick_s=TICK_S, faults=faults))


def _readings(fleet: Fleet, tick: int) -> list[Reading]:
    messages = fleet.equipment_messages(tick)
    equipment = [r for m in messages for r in equipment_readings(m.encode()).readings]
    return [*fleet.patch_readings(tick), *equipment]


def _load_demo(dsn: str) -> tuple[datetime, datetime]:
    """Readings, alerts, a dead letter, the installed base and tickets; the range covering them."""
    fleet = _demo_fleet()
    engine = RuleEngine([*load_pack("dressings"), *load_pack("equipment")], None)
    events = []
    with TimescaleStore(dsn) as store:
        store.migrate()
        for tick in range(TICKS):
            readings = _readings(fleet, tick)
            store.store_batches([Batch("ward-3-gateway", tick, tuple(readings))])
            events += engine.process_readings(readings, now_us())
            events += engine.tick(engine.clock_us)
        store.store_alert_events(events)
        letter = DeadLetter(fleet.time_us(5), "ingest", "timestamp out of window", b"{}", "gw-x", 1)
        store.store_dead_letters([letter])
    service = PostgresStore(dsn)
    try:
        seed_service(service, fleet)
        sla = SlaConfig()
        for event in events:  # each alert reaches the desk when it was raised
            intake_alert(service, event, datetime_from_us(event.at_us), sla)
    finally:
        service.close()
    assert {e.device_id for e in events} & {p.device_id for p in fleet.patches}
    assert {e.device_id for e in events} & {d.device_id for d in fleet.equipment}
    start = datetime_from_us(fleet.time_us(0)) - timedelta(hours=1)
    return start, datetime.now(UTC) + timedelta(hours=1)  # batch claims are stamped now


@pytest.fixture(scope="module")
def demo_dsn(postgres_server: PrivatePostgres) -> Iterator[tuple[str, datetime, datetime]]:
    with fresh_database(postgres_server) as dsn:
        start, end = _load_demo(dsn)
        yield dsn, start, end


def _variables(
    conn: psycopg.Connection[Any], board: dict[str, Any], start: datetime, end: datetime
) -> dict[str, list[str]]:
    """Every template variable's values ("All"), from its own query."""
    values = {}
    for variable in board["templating"]["list"]:
        rows = conn.execute(expand(variable["query"], start, end, {})).fetchall()  # type: ignore[arg-type]
        assert rows, f"variable {variable['name']} finds nothing"
        values[variable["name"]] = [str(r[0]) for r in rows]
    return values


def test_every_sql_query_runs_and_finds_the_demo_data(
    demo_dsn: tuple[str, datetime, datetime],
) -> None:
    dsn, start, end = demo_dsn
    failures, ran = [], 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, board in _dashboards().items():
            variables = _variables(conn, board, start, end)
            for panel in board["panels"]:
                for target in panel["targets"]:
                    if target["datasource"]["type"] != SQL_SOURCE:
                        continue
                    sql = expand(target["rawSql"], start, end, variables)
                    ran += 1
                    try:
                        rows = conn.execute(sql).fetchall()  # type: ignore[arg-type]
                    except psycopg.Error as exc:
                        failures.append(f"{name} / {panel['title']}: {exc}")
                        continue
                    # A count of nothing is a row too: a stat of only zeros found nothing.
                    if not rows or all(v is None or v == 0 for v in rows[0]):
                        failures.append(f"{name} / {panel['title']}: nothing found: {rows[:1]}")
    assert not failures, "\n".join(failures)
    assert ran >= 25


def test_dashboards_cover_the_ward_the_equipment_and_the_desk() -> None:
    boards = _dashboards()
    assert set(boards) == {
        "fleet-overview", "ward-telemetry", "equipment-health", "pipeline-health", "sla-tickets",
    }  # fmt: skip
    sql = dict.fromkeys(boards, "")
    for board, _, target in _targets(SQL_SOURCE):
        sql[board] += " " + target["rawSql"]
    for metric in ("wound_ph", "wound_temp", "skin_temp", "exudate", "battery"):
        assert f"'{metric}'" in sql["ward-telemetry"], metric
    for metric in ("mains_voltage", "ng_voltage", "probe_health", "error_code"):
        assert f"'{metric}'" in sql["equipment-health"], metric
    assert "breach" in sql["sla-tickets"] and "service_tickets" in sql["sla-tickets"]
    assert any(n == "pipeline-health" for n, _, _ in _targets("prometheus"))


def test_the_dashboard_files_are_what_the_generator_writes() -> None:
    expected = _generator().rendered()
    actual = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert actual == expected, "stale: run `python deploy/grafana/dashboards.py`"


def test_the_generator_counts_open_tickets_as_the_service_does() -> None:
    states = set(re.findall(r"'(\w+)'", _generator().OPEN_STATES))
    assert states == {str(s) for s in OPEN_STATES}


def test_every_panel_uses_a_provisioned_data_source() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/timescaledb.yml").read_text())
    provisioned = {(d["type"], d["uid"]) for d in doc["datasources"]}
    for board in _dashboards().values():
        for panel in board["panels"]:
            for target in panel["targets"]:
                source = target["datasource"]
                assert (source["type"], source["uid"]) in provisioned, panel["title"]


def _listed_metrics() -> set[str]:
    lines = (GRAFANA / "promql-metrics.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _scraped_names() -> set[str]:
    """Sample names a scrape of the gateway's and ingest's registries shows."""
    names = set()
    for registry in (GatewayCounters().registry, IngestCounters().registry):
        for family in registry.collect():  # a family is named without a counter's _total
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_every_promql_metric_is_listed_and_scraped() -> None:
    listed = _listed_metrics()
    for name in listed:
        assert re.fullmatch(r"vigil_[a-z]+_[a-z0-9_]+", name), name
    used = set()
    for board, title, target in _targets("prometheus"):
        names = set(re.findall(r"\b(vigil_[a-z0-9_]+)\b", target["expr"]))
        assert names, f"{board} / {title}: no vigil metric in {target['expr']}"
        assert names <= listed, f"{board} / {title}: {names - listed} not in promql-metrics.txt"
        used |= names
    assert used == listed, f"listed but unused: {listed - used}"
    missing = listed - _scraped_names()
    assert not missing, f"no registry serves {missing}"


def test_prometheus_scrapes_compose_services_and_the_gateway_where_it_serves() -> None:
    from tests.deploy.compose import environment, services

    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    for job, hosts in targets.items():
        for target in hosts:
            host = target.split(":")[0]
            assert host == "localhost" or host in services(), f"{job}: {target}"
    port = environment(services()["gateway"])["VIGIL_GATEWAY__METRICS_PORT"]
    assert targets["gateway"] == [f"gateway:{port}"]
