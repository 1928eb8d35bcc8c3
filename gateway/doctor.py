"""`vigil gateway doctor`: what a technician checks on a gateway box, each failure with its fix.

The checks that need Bluetooth hardware (BlueZ, adapters, patches heard) are skipped — and say
so — where there is no D-Bus system bus; the others (outbox disk, the uplink and site brokers,
the clock and its offset from the backbone's, certificate expiry) run anywhere. A linked patch
does not advertise, so a patch BlueZ holds a link to counts as heard.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiomqtt

from infra.mqtt_tls import MqttTls

DBUS_SOCKET = Path("/run/dbus/system_bus_socket")


class Status(StrEnum):
    """How a check came out."""

    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the checklist; ``fix`` says what to do when it failed."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def system_bus_present() -> bool:
    """Whether a D-Bus system bus is reachable here (BlueZ lives on it)."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    if address.startswith("unix:path="):
        return Path(address.split("=", 1)[1].split(",")[0]).exists()
    return DBUS_SOCKET.exists()


async def check_bluez(bluez: Any | None, bus_present: bool) -> list[Check]:
    """BlueZ answers, it has an adapter, every adapter is powered."""
    if not bus_present:
        return [
            Check(
                "BlueZ / D-Bus",
                Status.SKIP,
                "no D-Bus system bus here (a container, CI, not Linux): Bluetooth checks skipped",
            )
        ]
    if bluez is None:
        return [
            Check(
                "BlueZ / D-Bus",
                Status.FAIL,
                "D-Bus is up but BlueZ (org.bluez) does not answer",
                "`sudo systemctl enable --now bluetooth`; then `systemctl status bluetooth`",
            )
        ]
    adapters = bluez.adapters()
    if not adapters:
        return [
            Check(
                "Bluetooth adapter",
                Status.FAIL,
                "BlueZ shows no adapter",
                "plug the dongle in; `rfkill unblock bluetooth`; `hciconfig -a` should list hci0",
            )
        ]
    checks = [Check("BlueZ / D-Bus", Status.OK, f"{len(adapters)} adapter(s)")]
    for info in adapters.values():
        if info.powered:
            checks.append(Check(f"adapter {info.name}", Status.OK, f"{info.address}, powered"))
        else:
            checks.append(
                Check(
                    f"adapter {info.name}",
                    Status.FAIL,
                    f"{info.address} is not powered",
                    f"`rfkill unblock bluetooth`; `bluetoothctl power on` (adapter {info.name})",
                )
            )
    return checks


def check_disk(outbox_path: Path, needed_bytes: int) -> Check:
    """Room on the outbox's file system for a full outbox."""
    folder = outbox_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    used = outbox_path.stat().st_size if outbox_path.exists() else 0
    free = shutil.disk_usage(folder).free
    short = needed_bytes - used - free
    detail = (
        f"{free / 1e6:,.0f} MB free at {folder}; a full outbox needs {needed_bytes / 1e6:,.0f} MB"
    )
    if short > 0:
        return Check(
            "outbox disk headroom",
            Status.FAIL,
            detail,
            f"free {short / 1e6:,.0f} MB on that file system, or lower "
            "[gateway] outbox_max_readings (VIGIL_GATEWAY__OUTBOX_MAX_READINGS)",
        )
    return Check("outbox disk headroom", Status.OK, detail)


async def check_broker(
    host: str,
    port: int,
    timeout_s: float = 5.0,
    tls: ssl.SSLContext | str | None = None,
    name: str = "uplink broker",
    settings: str = "[uplink_broker] host and port (VIGIL_UPLINK_BROKER__HOST/__PORT)",
) -> Check:
    """The broker accepts an MQTT connection (over TLS with ``tls``, as the gateway connects).

    ``tls`` as text: why the TLS files could not make a context; the broker is not probed.
    """
    where = f"{host}:{port}"
    if isinstance(tls, str):
        return Check(
            name,
            Status.FAIL,
            f"{where} not tried: its TLS files cannot be used ({tls})",
            f"check the tls_ca_file, tls_cert_file and tls_key_file of {settings.split()[0]}:"
            " each must exist, be readable by this user, and the key must be the certificate's",
        )
    try:
        async with asyncio.timeout(timeout_s):
            async with aiomqtt.Client(
                host, port, identifier="vigil-doctor", timeout=timeout_s, tls_context=tls
            ):
                pass
    except aiomqtt.MqttCodeError as exc:  # the broker answered: reachable, but refused us
        return Check(name, Status.OK, f"{where} answers (refused this probe: {exc})")
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        return Check(
            name,
            Status.FAIL,
            f"{where} unreachable: {exc or type(exc).__name__}",
            f"check {settings}, the network and the firewall; "
            f"`mosquitto_sub -h {host} -p {port} -t x -C 1 -W 5`",
        )
    return Check(name, Status.OK, f"{where} accepts connections")


def check_clock(state: str, trusted: bool) -> Check:
    """The clock can stamp readings (else they are held until it can)."""
    if trusted:
        return Check("clock", Status.OK, f"trusted ({state})")
    return Check(
        "clock",
        Status.FAIL,
        "not NTP-synchronised: BLE readings are held until it is",
        "`timedatectl set-ntp true`; `timedatectl timesync-status` must show a server; "
        "open UDP 123 to the NTP server",
    )


Listen = Callable[[float], Awaitable[set[str]]]


async def check_patches_heard(
    paired: Sequence[tuple[str, str]],
    listen: Listen | None,
    linked: set[str],
    listen_s: float,
) -> list[Check]:
    """Every paired patch (address, device id) advertised within ``listen_s`` or is linked."""
    if listen is None:
        return [Check("patches heard", Status.SKIP, "no Bluetooth here: not listened")]
    if not paired:
        return [Check("patches heard", Status.SKIP, "no paired patch (pass --keys)")]
    heard = {a.upper() for a in await listen(listen_s)} | {a.upper() for a in linked}
    checks = []
    for address, device_id in paired:
        if address.upper() in heard:
            how = "linked" if address.upper() in linked else "advertising"
            checks.append(Check(f"patch {device_id}", Status.OK, f"{address} {how}"))
        else:
            checks.append(
                Check(
                    f"patch {device_id}",
                    Status.FAIL,
                    f"{address} not heard in the last {listen_s:g} s",
                    "bring the patch within 2 m of the gateway; check it is on a patient or "
                    "activated (its LED blinks) and not flat; re-pair it if it was replaced",
                )
            )
    return checks


def tls_inputs(
    tls: MqttTls | None, label: str
) -> tuple[ssl.SSLContext | str | None, list[tuple[str, Path]]]:
    """For one broker: the TLS context to probe it with (or why there is none: text), and the
    certificate files to check."""
    if tls is None:
        return None, []
    files = [(f"{label} CA", tls.ca)]
    if tls.cert is not None:
        files.append((f"{label} client", tls.cert))
    try:
        return tls.context(), files
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}", files


def failed(checks: Sequence[Check]) -> bool:
    """Whether any check failed."""
    return any(c.status is Status.FAIL for c in checks)


async def listen_ble(listen_s: float, backend: Any | None = None) -> set[str]:
    """Addresses of devices that sent a vigil patch advert (BTHome or the patch service)."""
    from bleak import BleakScanner
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from contract.ble import uuids

    heard: set[str] = set()

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        if uuids.BTHOME_SERVICE_DATA in adv.service_data or uuids.PATCH_SERVICE in (
            adv.service_uuids
        ):
            heard.add(device.address.upper())

    async with BleakScanner(on_advert, backend=backend):
        await asyncio.sleep(listen_s)
    return heard


@dataclass(frozen=True, slots=True)
class DoctorInputs:
    """What the doctor checks against."""

    outbox_path: Path
    outbox_bytes: int  # what a full outbox takes on disk
    broker_host: str
    broker_port: int
    paired: Sequence[tuple[str, str]] = ()  # (address, device id)
    listen_s: float = 60.0
    broker_tls: ssl.SSLContext | str | None = None  # the uplink's TLS context (text: unusable)
    scanner_backend: Any | None = None  # None: the OS stack
    bus_present: bool | None = None  # None: look for the D-Bus system bus
    time_source: Any | None = None  # None: this machine's clocks
    # The site broker the equipment bridge consumes, when it bridges: (host, port, TLS).
    site_broker: tuple[str, int, ssl.SSLContext | str | None] | None = None
    ntp_server: str | None = None  # the backbone's time; None: the clock offset is skipped
    ntp_port: int = 123
    max_clock_offset_s: float = 1.0
    certificates: Sequence[tuple[str, Path]] = ()  # (label, PEM file) the gateway connects with
    min_certificate_days: float = 30.0


async def examine(inputs: DoctorInputs) -> list[Check]:
    """Run every check, in the order a technician would."""
    from gateway.ble.bluez import open_bluez
    from gateway.ble.clock import SystemTime, clock_state

    bus = system_bus_present() if inputs.bus_present is None else inputs.bus_present
    install = getattr(inputs.scanner_backend, "install_in_loop", None)
    if callable(install):
        install()
    bluez = await open_bluez() if bus else None
    checks = await check_bluez(bluez, bus)
    checks.append(check_disk(inputs.outbox_path, inputs.outbox_bytes))
    checks.append(await check_broker(inputs.broker_host, inputs.broker_port, tls=inputs.broker_tls))
    if inputs.site_broker is not None:
        host, port, tls = inputs.site_broker
        where = "[site_broker] host and port (VIGIL_SITE_BROKER__HOST/__PORT)"
        checks.append(await check_broker(host, port, tls=tls, name="site broker", settings=where))
    state = clock_state(inputs.time_source or SystemTime())
    checks.append(check_clock(state.value, state.trusted))
    checks += await _time_and_certificates(inputs)
    listen: Listen | None = None
    linked: set[str] = set()
    if bluez is not None and bluez.adapters():
        backend = inputs.scanner_backend

        async def listen(seconds: float) -> set[str]:
            return await listen_ble(seconds, backend)

        for info in bluez.adapters().values():
            linked |= {d.address.upper() for d in bluez.connected(info.name)}
    checks += await check_patches_heard(inputs.paired, listen, linked, inputs.listen_s)
    return checks


async def _time_and_certificates(inputs: DoctorInputs) -> list[Check]:
    """The clock against the backbone's, and the expiry of every certificate in use."""
    from gateway.doctor_certs import check_certificates
    from gateway.doctor_clock import check_clock_offset

    offset = await check_clock_offset(
        inputs.ntp_server, inputs.max_clock_offset_s, port=inputs.ntp_port
    )
    return [offset, *check_certificates(inputs.certificates, inputs.min_certificate_days)]
