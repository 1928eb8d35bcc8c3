"""`vigil rules …`: check rule files, replay stored history through the rules, run the worker."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from contract import AlertEvent, Reading
from infra.logs import show_start_lines
from infra.time_us import datetime_from_us, now_us, us_from_datetime
from vigil.commands.observe import metrics_port_option

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from rules.model import AnyRule
    from rules.registry import Registry
    from rules.runtime import RuntimeSettings
    from rules.worker import RulesWorkerSettings
    from vigil.settings import VigilSettings

app = typer.Typer(help="Alert rules: check, replay, run, evaluate.", no_args_is_help=True)
console = Console()

PackOption = Annotated[
    list[str] | None,
    typer.Option(
        "--pack",
        help="A shipped rule pack (dressings, equipment); repeatable [default: rules.packs].",
    ),
]
RulesOption = Annotated[
    list[Path] | None,
    typer.Option("--rules", help="A YAML rule file; repeatable [default: rules.rule_files]."),
]
RegistryOption = Annotated[
    Path | None,
    typer.Option(
        help="YAML/JSON device registry: {device: {kind, model, site, reference, patient, "
        "wound, reference_wound}} [default: rules.registry_file]."
    ),
]
REPLAY_CHUNK = 20_000


@app.command("check")
def rules_check(
    files: Annotated[list[Path], typer.Argument(help="Rule files to validate.")],
) -> None:
    """Validate rule files; print every problem (file, rule, field) and exit 1 if any."""
    from rules import check_rule_file

    problems = [line for path in files for line in check_rule_file(path)]
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    console.print(f"{len(files)} rule file(s) OK")


@app.command("replay")
def rules_replay(
    storage_url: Annotated[str, typer.Option(help="sqlite:///… or postgresql://…")],
    since: Annotated[datetime | None, typer.Option(help="From this time (UTC if naive).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time (UTC if naive).")] = None,
    pack: PackOption = None,
    rule_file: RulesOption = None,
    registry: RegistryOption = None,
) -> None:
    """Run the rules over stored readings and print the alerts they raise and clear."""
    from infra.telemetry import open_store

    rules = load_rules(pack, rule_file)
    store = open_store(storage_url)
    with store:
        readings = store.fetch_readings(since_us=_us(since), until_us=_us(until))
    events = replay(rules, registry_from(registry), readings)
    console.print(
        alert_table(
            events, title=f"{len(events)} alert events from {len(readings):,} stored readings"
        )
    )


@app.command("run")
def rules_run(
    pack: PackOption = None,
    rule_file: RulesOption = None,
    registry: RegistryOption = None,
    client_id: Annotated[
        str | None,
        typer.Option(help="MQTT client id [default: vigil-rules-<replica>, else rules.client_id]."),
    ] = None,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            help="Engine state file [default: rules.snapshot_path]; with PostgreSQL the state "
            "is kept in the database and this file is only read when it has none yet."
        ),
    ] = None,
    replica: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="This replica's number N of several (PostgreSQL): its client id is "
            "vigil-rules-N [default: rules.replica].",
        ),
    ] = None,
    metrics_port: Annotated[int | None, metrics_port_option("rules_port")] = None,
) -> None:
    """Run the broker-fed rules worker until interrupted (broker and storage from settings).

    With PostgreSQL storage any number of replicas may run: one evaluates (it holds the lease),
    the others stand by and take over when it goes. With SQLite, run exactly one.
    """
    show_start_lines()  # a long-running process: say what it connects to, at any level
    from prometheus_client import CollectorRegistry

    from infra.installed_base import InstalledBaseError, load_installed_base
    from infra.logs import mask_url, started
    from vigil.commands.observe import chosen_port, metrics_endpoint
    from vigil.settings import VigilSettings
    from vigil.startup import startup_files
    from vigil.stopping import run_until_stopped

    settings = VigilSettings()
    with startup_files("rules run", InstalledBaseError):
        worker_settings = settings.rules_worker_settings(replica)
        if worker_settings.installed_base_file is not None:
            load_installed_base(worker_settings.installed_base_file)
    rules = load_rules(pack, rule_file, settings)
    devices = registry_from(registry or settings.rules.registry_file)
    runtime_settings = settings.runtime_settings()
    if snapshot is not None:
        runtime_settings = dataclasses.replace(runtime_settings, snapshot_path=snapshot)
    if client_id is not None:
        worker_settings = dataclasses.replace(worker_settings, client_id=client_id)
    url = settings.ingest.storage_url
    exported = CollectorRegistry()
    kind = "replica behind the lease" if is_postgres(url) else "single worker"
    started("rules", "storage", url=mask_url(url), mode=kind, rules=len(rules))
    port = chosen_port(metrics_port, settings.metrics.rules_port)
    with metrics_endpoint("rules", exported, port, settings.metrics.host):
        if is_postgres(url):
            run_until_stopped(
                _replica(url, rules, devices, runtime_settings, worker_settings, exported)
            )
        else:
            run_until_stopped(
                _single(url, rules, devices, runtime_settings, worker_settings, exported)
            )


@app.command("evaluate")
def rules_evaluate(
    pack: PackOption = None,
    rule_file: RulesOption = None,
    patients: Annotated[int, typer.Option(min=1, help="Patients per cohort.")] = 40,
    days: Annotated[float, typer.Option(min=3.0, help="Simulated days per patient.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Cohort seed.")] = 11,
    out: Annotated[
        Path | None, typer.Option(help="Also write the Markdown report to this file.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 if a target of the report is missed.")
    ] = False,
) -> None:
    """Score the rules on a labelled synthetic cohort (sensitivity, delays, false alerts).

    A synthetic cohort tests the engine and the pack's logic, not clinical validity.
    """
    from simulator.cohort import CohortSpec
    from vigil.evaluation import check_targets, evaluate, report_markdown

    rules = load_rules(pack or (None if rule_file else ["dressings"]), rule_file)
    result = evaluate(CohortSpec(patients=patients, days=days, seed=seed), rules)
    text = report_markdown(result)
    typer.echo(text)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    if strict and check_targets(result):
        raise typer.Exit(1)


def is_postgres(url: str) -> bool:
    """Whether a storage URL names PostgreSQL (else SQLite)."""
    return not url.startswith("sqlite:")


async def _single(
    url: str,
    rules: list[AnyRule],
    devices: Registry,
    runtime_settings: RuntimeSettings,
    worker_settings: RulesWorkerSettings,
    exported: CollectorRegistry,
) -> None:
    """The one rules worker of a SQLite deployment, with its checkpoint in a file."""
    from infra.telemetry import open_store
    from rules import metrics
    from rules.runtime import RuleRuntime
    from rules.worker import RulesWorker

    with open_store(url) as store:
        store.migrate()
        async with RuleRuntime(rules, devices, store, None, runtime_settings) as runtime:
            worker = RulesWorker(worker_settings, runtime)
            holder = worker_settings.client_id
            metrics.register(exported, runtime, worker=worker, store=store, holder=holder)
            await worker.run()


async def _replica(
    url: str,
    rules: list[AnyRule],
    devices: Registry,
    runtime_settings: RuntimeSettings,
    worker_settings: RulesWorkerSettings,
    exported: CollectorRegistry,
) -> None:
    """One of several replicas: it evaluates while it holds the lease, else stands by."""
    from infra.telemetry import open_store
    from rules import metrics
    from rules.checkpoint import FileCheckpoints
    from rules.lease import AdvisoryLease, LeasedCheckpoints
    from rules.replica import Replica
    from rules.runtime import RuleRuntime
    from rules.worker import RulesWorker

    path = runtime_settings.snapshot_path
    # Every replica sees every batch: a shared group would split each series between them.
    worker_settings = dataclasses.replace(worker_settings, shared_group=None)
    lease = AdvisoryLease(url, holder=worker_settings.client_id)
    checkpoints = LeasedCheckpoints(lease, fallback=FileCheckpoints(path) if path else None)
    with open_store(url) as store, contextlib.closing(lease):
        store.migrate()
        async with RuleRuntime(
            rules, devices, store, None, runtime_settings, checkpoints=checkpoints, standby=True
        ) as runtime:

            def stored_since(ts_us: int) -> list[Reading]:
                return store.fetch_readings(since_us=ts_us)

            replica = Replica(runtime, lease, checkpoints, stored_since)
            worker = RulesWorker(worker_settings, runtime, replica)
            metrics.register(
                exported,
                runtime,
                worker=worker,
                replica=replica,
                store=store,
                holder=worker_settings.client_id,
            )
            await worker.run()


def replay(
    rules: list[AnyRule], registry: Registry | None, readings: list[Reading]
) -> list[AlertEvent]:
    """Evaluate readings in time order, ticking silence rules at the newest reading so far.

    Stored readings cannot be from the future: one stamped beyond now (plus the policy's skew)
    is dropped, and silence is judged at the newest reading actually evaluated.
    """
    from rules import RuleEngine

    engine = RuleEngine(rules, registry)
    now = now_us()
    events: list[AlertEvent] = []
    for start in range(0, len(readings), REPLAY_CHUNK):
        chunk = readings[start : start + REPLAY_CHUNK]
        events += engine.process_readings(chunk, now)
        if engine.clock_us:
            events += engine.tick(engine.clock_us)
    return events


def alert_table(events: list[AlertEvent], title: str) -> Table:
    """Alert events as a rich table."""
    table = Table(title=title)
    for name in ("time (UTC)", "device", "rule", "severity", "transition", "message"):
        table.add_column(name)
    for e in events:
        at = _time(e.at_us)
        table.add_row(
            at, e.device_id, e.rule_id, e.severity.name.lower(), e.transition.value, e.message
        )
    return table


def load_rules(
    packs: list[str] | None, files: list[Path] | None, settings: VigilSettings | None = None
) -> list[AnyRule]:
    """The rules named on the command line, else those of ``settings``; exit 2 on a bad one."""
    from rules import RuleFileError, load_pack, load_rule_file

    if not packs and not files and settings is not None:
        packs, files = settings.rules.packs, settings.rules.rule_files
    chosen = list(packs or ([] if files else ["dressings", "equipment"]))
    try:
        rules: list[AnyRule] = [r for name in chosen for r in load_pack(name)]
        rules += [r for path in files or [] for r in load_rule_file(path)]
    except (KeyError, RuleFileError) as exc:
        console.print(str(exc).strip("'\""), markup=False)
        raise typer.Exit(2) from None
    return rules


def registry_from(path: Path | None) -> Registry:
    """The device registry in ``path``, or an empty one."""
    from rules.registry import load_registry

    return load_registry(path) if path is not None else {}


def _time(at_us: int) -> str:
    """A µs timestamp as UTC date and time, or the raw number if no calendar date fits."""
    try:
        return datetime_from_us(at_us).strftime("%Y-%m-%d %H:%M:%S")
    except OverflowError:
        return f"{at_us} µs"


def _us(at: datetime | None) -> int | None:
    if at is None:
        return None
    return us_from_datetime(at if at.tzinfo is not None else at.replace(tzinfo=UTC))
