"""`vigil gateway …`: the edge gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from infra.logs import show_start_lines
from vigil.commands.observe import chosen_port, metrics_endpoint
from vigil.settings import VigilSettings
from vigil.startup import startup_files

if TYPE_CHECKING:
    from gateway.app import Gateway, GatewaySettings
    from gateway.profiles import GatewayProfile
    from gateway.source import ReadingSource

app = typer.Typer(help="The edge gateway.", no_args_is_help=True)
console = Console()
log = logging.getLogger(__name__)


@app.command("run")
def gateway_run(
    gateway_id: Annotated[
        str | None, typer.Option(help="Gateway id (env VIGIL_GATEWAY__ID).")
    ] = None,
    outbox_path: Annotated[
        Path | None, typer.Option(help="Outbox file (env VIGIL_GATEWAY__OUTBOX_PATH).")
    ] = None,
    uplink_host: Annotated[
        str | None, typer.Option(help="Uplink broker host (env VIGIL_UPLINK_BROKER__HOST).")
    ] = None,
    uplink_port: Annotated[
        int | None, typer.Option(help="Uplink broker port (env VIGIL_UPLINK_BROKER__PORT).")
    ] = None,
    site_host: Annotated[
        str | None, typer.Option(help="Site broker host (env VIGIL_SITE_BROKER__HOST).")
    ] = None,
    site_port: Annotated[
        int | None, typer.Option(help="Site broker port (env VIGIL_SITE_BROKER__PORT).")
    ] = None,
    bridge: Annotated[
        bool | None,
        typer.Option(help="Bridge site equipment (env VIGIL_GATEWAY__BRIDGE_EQUIPMENT)."),
    ] = None,
    outbox_max_bytes: Annotated[
        int | None, typer.Option(help="Also bound the outbox's live database bytes.")
    ] = None,
    simulate_patches: Annotated[
        int, typer.Option(help="Also read this many simulated patches.")
    ] = 0,
    ticks: Annotated[
        int | None, typer.Option(help="Simulated samples per patch (env VIGIL_SIMULATOR__TICKS).")
    ] = None,
    tick_wall_s: Annotated[
        float | None,
        typer.Option(help="Wall seconds between ticks (env VIGIL_SIMULATOR__TICK_WALL_S)."),
    ] = None,
    exit_when_drained: Annotated[
        bool, typer.Option(help="Exit once the simulation is done and the outbox is empty.")
    ] = False,
    keys: Annotated[
        Path | None,
        typer.Option(help="Key store of paired patches: read them over BLE (BlueZ)."),
    ] = None,
    patient: Annotated[
        str | None,
        typer.Option(help="With --keys: run as this patient's home-care kit, not a ward."),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="With --keys: where the outbox and replay marks live.")
    ] = Path("var/gateway"),
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus metrics at http://<metrics.host>:PORT/metrics "
            "[default: gateway.metrics_port; unset: off].",
        ),
    ] = None,
) -> None:
    """Run the gateway until SIGTERM/SIGINT (or until drained, if asked)."""
    show_start_lines()  # a long-running process: say what it connects to, at any level
    from gateway.app import Gateway

    vigil = VigilSettings()
    g = vigil.gateway
    g.id = gateway_id or g.id
    g.outbox_path = outbox_path or g.outbox_path
    g.bridge_equipment = g.bridge_equipment if bridge is None else bridge
    vigil.uplink_broker.host = uplink_host or vigil.uplink_broker.host
    vigil.uplink_broker.port = uplink_port or vigil.uplink_broker.port
    vigil.site_broker.host = site_host or vigil.site_broker.host
    vigil.site_broker.port = site_port or vigil.site_broker.port
    with startup_files("gateway run"):
        base = vigil.gateway_settings()
    settings = dataclasses.replace(base, outbox_max_bytes=outbox_max_bytes)

    from gateway.counters import GatewayCounters

    counters = GatewayCounters()
    sources: list[ReadingSource] = []
    if keys is not None:
        profile = _profile(vigil, keys, patient, state_dir)
        ble = dataclasses.replace(profile.ble, clock_ntp=g.clock_ntp)
        profile = dataclasses.replace(profile, ble=ble)
        # The profile's outbox sizing, links and batching replace the generic settings.
        settings = dataclasses.replace(profile.settings, health_every_s=g.health_every_s)
        # BLE counters go into the gateway's registry: exported with its metrics.
        sources.append(profile.acquisition(registry=counters.registry))
        console.print(
            f"{profile.kind} gateway {settings.gateway_id}: {len(profile.paired)} paired patches"
        )
    if simulate_patches:
        sources.append(_simulated(vigil, simulate_patches, ticks, tick_wall_s))
    retention = vigil.retention_policy()
    settings = dataclasses.replace(
        settings,
        dead_letter_max_age_s=retention.dead_letters_days * 86_400.0,
        dead_letter_expiry_interval_s=retention.interval_s,
    )
    port = chosen_port(metrics_port, g.metrics_port)

    from gateway import metrics
    from gateway.sd_notify import supervised
    from vigil.stopping import run_until_stopped

    failures: list[BaseException] = []

    async def main() -> None:
        gateway = Gateway(settings, sources, counters)
        metrics.register(counters.registry, gateway)
        _log_start(settings)
        async with (
            gateway,
            supervised(f"gateway {settings.gateway_id} running", lambda: gateway.failure is None),
        ):
            log.info("gateway %s running", settings.gateway_id)
            work = _until_drained(gateway) if exit_when_drained else asyncio.Event().wait()
            failure = await _unless_failed(gateway, work)
            if failure is not None:
                failures.append(failure)
        log.info("gateway %s stopped", settings.gateway_id)

    with metrics_endpoint("gateway", counters.registry, port, vigil.metrics.host):
        run_until_stopped(main())
    if failures:
        # A dead source or uplink: exit non-zero so the supervisor (systemd) restarts us.
        console.print(
            f"gateway {settings.gateway_id} failed: {failures[0]!r}", style="red", markup=False
        )
        raise typer.Exit(1)


def _log_start(settings: GatewaySettings) -> None:
    """Say what the gateway connects to and where its outbox is (the bridge says its own)."""
    from contract.topics import batch_topic, confirm_topic
    from infra.logs import started

    u = settings.uplink
    started(
        "gateway",
        "uplink",
        broker=f"{u.host}:{u.port}",
        tls=u.tls is not None,
        client_id=f"vigil-gateway-{settings.gateway_id}",
        publishes=batch_topic(settings.gateway_id),
        confirms=confirm_topic(settings.gateway_id) if u.require_confirmation else "off",
        outbox=settings.outbox_path,
    )


async def _unless_failed(
    gateway: Gateway, work: Coroutine[Any, Any, object]
) -> BaseException | None:
    """Run ``work`` until it returns (None) or a gateway task dies (its exception)."""
    doing = asyncio.create_task(work)
    failed = asyncio.create_task(gateway.wait_failed())
    try:
        await asyncio.wait({doing, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (doing, failed):
            task.cancel()
        await asyncio.gather(doing, failed, return_exceptions=True)
    if failed.done() and not failed.cancelled():
        return failed.result()
    doing.result()  # the drained wait's own error, if any
    return None


def _simulated(
    vigil: VigilSettings, patches: int, ticks: int | None, tick_wall_s: float | None
) -> ReadingSource:
    """Simulated patches as a reading source; they need numpy, which an edge box may lack."""
    try:
        from simulator.fleet import Fleet, FleetSpec
        from simulator.runner import SimulatedFleet
    except ModuleNotFoundError as exc:
        console.print(f"--simulate-patches needs {exc.name}: pip install 'vigil[sim]'", style="red")
        raise typer.Exit(2) from None
    s = vigil.simulator
    fleet = Fleet(FleetSpec(seed=s.seed, patches=patches, equipment=0, tick_s=s.tick_s))
    return SimulatedFleet(
        fleet,
        ticks if ticks is not None else s.ticks,
        tick_wall_s if tick_wall_s is not None else s.tick_wall_s,
    )


async def _until_drained(gateway: Gateway) -> None:
    """Wait for every finite source to finish and the outbox to empty."""
    await gateway.sources_done()
    await gateway.drained()


@app.command("profile")
def gateway_profile(
    keys: Annotated[Path, typer.Option(help="Key store of paired patches.")],
    patient: Annotated[
        str | None, typer.Option(help="Plan this patient's home-care kit instead of a ward.")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="Where the outbox would live.")] = Path(
        "var/gateway"
    ),
) -> None:
    """Show what a ward gateway or home kit would run with: patches, links, outbox sizing."""
    profile = _profile(VigilSettings(), keys, patient, state_dir)
    console.print(f"profile: {profile.kind}, gateway {profile.settings.gateway_id}")
    console.print(f"paired patches: {', '.join(p.device_id for p in profile.paired)}")
    console.print(f"connection slots: {profile.ble.max_connections}")
    console.print(f"outbox bound: {profile.settings.outbox_max_readings:,} readings")
    if profile.sizing is not None:
        console.print(profile.sizing.explain())


@app.command("doctor")
def gateway_doctor(
    keys: Annotated[
        Path | None, typer.Option(help="Key store: check that its patches are heard.")
    ] = None,
    patient: Annotated[
        str | None, typer.Option(help="With --keys: only this patient's home-kit patches.")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="With --keys: where the outbox lives.")] = Path(
        "var/gateway"
    ),
    listen_s: Annotated[float, typer.Option(help="How long to listen for patches.")] = 60.0,
    ntp_server: Annotated[
        str | None,
        typer.Option(help="NTP server HOST[:PORT] to compare the clock with (default: uplink's)."),
    ] = None,
    max_clock_offset_s: Annotated[
        float, typer.Option(help="Largest acceptable clock offset, in seconds.")
    ] = 1.0,
    certificate_days: Annotated[
        float, typer.Option(help="Fail a certificate that expires within these days.")
    ] = 30.0,
) -> None:
    """Check this box: Bluetooth, disk, brokers, clock and offset, certificates, patches heard."""
    from gateway.doctor import DoctorInputs, examine, failed, tls_inputs
    from gateway.doctor_clock import ntp_server as parse_ntp
    from gateway.profiles import OUTBOX_BYTES_PER_READING

    vigil = VigilSettings()
    outbox_path = vigil.gateway.outbox_path
    outbox_bytes = vigil.gateway.outbox_max_readings * OUTBOX_BYTES_PER_READING
    paired: list[tuple[str, str]] = []
    if keys is not None:
        profile = _profile(vigil, keys, patient, state_dir)
        outbox_path = profile.settings.outbox_path
        outbox_bytes = profile.settings.outbox_max_readings * OUTBOX_BYTES_PER_READING
        paired = [(p.address, p.device_id) for p in profile.paired]
    uplink_tls, certificates = tls_inputs(vigil.uplink_broker.tls(), "uplink")
    ntp = parse_ntp(ntp_server or vigil.uplink_broker.host)
    site = None
    if vigil.gateway.bridge_equipment:
        site_tls, site_files = tls_inputs(vigil.site_broker.tls(), "site")
        site = (vigil.site_broker.host, vigil.site_broker.port, site_tls)
        certificates += site_files
    inputs = DoctorInputs(
        outbox_path=outbox_path,
        outbox_bytes=outbox_bytes,
        broker_host=vigil.uplink_broker.host,
        broker_port=vigil.uplink_broker.port,
        paired=paired,
        listen_s=listen_s,
        broker_tls=uplink_tls,
        site_broker=site,
        ntp_server=ntp[0],
        ntp_port=ntp[1],
        max_clock_offset_s=max_clock_offset_s,
        certificates=certificates,
        min_certificate_days=certificate_days,
    )
    checks = asyncio.run(examine(inputs))
    for check in checks:
        style = {"ok": "green", "FAIL": "red"}.get(check.status.value, "yellow")
        console.print(f"[{style}]{check.status.value:>7}[/] {check.name}: ", end="")
        console.print(check.detail, markup=False, soft_wrap=True)
        if check.fix:
            console.print(f"          fix: {check.fix}", markup=False, soft_wrap=True)
    if failed(checks):
        raise typer.Exit(1)


def _profile(
    vigil: VigilSettings, keys: Path, patient: str | None, state_dir: Path
) -> GatewayProfile:
    """The ward or home-kit profile for these keys, with a clear exit on a bad key store."""
    from gateway.keystore import KeyStoreError, load_keystore
    from gateway.profiles import home_kit_profile, ward_profile

    with startup_files("gateway"):
        uplink = vigil.gateway_settings().uplink
        site = vigil.site_broker_settings() if vigil.gateway.bridge_equipment else None
    try:
        store = load_keystore(keys)
        if patient is not None:
            return home_kit_profile(
                store,
                patient,
                gateway_id=vigil.gateway.id,
                state_dir=state_dir,
                uplink_host=uplink.host,
                uplink_port=uplink.port,
                uplink_tls=uplink.tls,
                confirm_key=uplink.confirm_key,
            )
        return ward_profile(
            store, gateway_id=vigil.gateway.id, state_dir=state_dir, uplink=uplink, site_broker=site
        )
    except KeyStoreError as exc:
        # Unwrapped and unmarked-up: the message carries a path and a command to copy.
        console.print(f"key store: {exc}", style="red", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
