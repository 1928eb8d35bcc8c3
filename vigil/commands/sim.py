"""`vigil sim …`: the device simulator."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from infra.mqtt_tls import MqttTls, TlsFilesError
from vigil.settings import VigilSettings
from vigil.startup import startup_files

if TYPE_CHECKING:
    from simulator.runner import DeviceTls

app = typer.Typer(help="The device simulator.", no_args_is_help=True)
console = Console()


@app.command("run")
def sim_run() -> None:
    """Publish the equipment fleet's telemetry to the site broker (patches need a gateway)."""
    from simulator.fleet import Fleet, FleetSpec
    from simulator.runner import SimulatedFleet

    settings = VigilSettings()
    s = settings.simulator
    fleet = Fleet(
        FleetSpec(
            seed=s.seed,
            patches=0,
            equipment=s.equipment,
            tick_s=s.tick_s,
            site=settings.gateway.site,
        )
    )
    with startup_files("sim run"):
        device_tls = _device_tls(settings, [d.device_id for d in fleet.equipment])
    source = SimulatedFleet(
        fleet,
        s.ticks,
        s.tick_wall_s,
        site_broker=(settings.site_broker.host, settings.site_broker.port),
        device_tls=device_tls,
        remote=s.remote,
    )

    async def discard(_: object) -> None:
        return None

    asyncio.run(source.run(discard))
    console.print(f"published {fleet.tally.readings:,} equipment readings")


def _device_tls(settings: VigilSettings, device_ids: list[str]) -> DeviceTls | None:
    """Each device's TLS files, checked: its own certificate from ``device_certs_dir``, or
    the [site_broker] one for all (None: plain TCP)."""
    shared = settings.check_tls("site_broker")
    certs = settings.simulator.device_certs_dir
    if shared is None or certs is None:
        return None if shared is None else (lambda _: shared)
    own: dict[str, MqttTls] = {}
    for device_id in device_ids:
        tls = MqttTls(shared.ca, certs / f"{device_id}.crt", certs / f"{device_id}.key")
        try:
            tls.check()
        except TlsFilesError as exc:
            raise TlsFilesError(f"[simulator] device_certs_dir: {exc}") from None
        own[device_id] = tls

    def device_tls(device_id: str) -> MqttTls | None:
        return own[device_id]

    return device_tls
