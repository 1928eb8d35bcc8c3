"""Real `vigil gateway run` / `vigil ingest run` processes on a TLS Mosquitto, each with its own
certificate from the test's PKI and configured only through VIGIL_… variables."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from contract import Batch, Reading
from infra.installed_base import DeviceEntry, InstalledBase
from infra.pki import Role
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import now_us
from simulator.fleet import Fleet, FleetSpec, patch_id
from tests.security.tls_broker import TlsBroker, start_tls_broker
from tests.waiting import wait_until

VIGIL = Path(sys.executable).with_name("vigil")
PATCHES = 3  # simulated by gw-a, registered at site-a
TICKS = 5
FOREIGN = "patch-0100"  # registered at site-b
SUBSCRIBED = "subscribed to"  # what the consume loop logs (at INFO) once it listens


def simulated_readings() -> int:
    """Readings `vigil gateway run --simulate-patches PATCHES` produces (the settings' seed)."""
    fleet = Fleet(FleetSpec(seed=7, patches=PATCHES, equipment=0, tick_s=60.0))
    return sum(len(fleet.patch_readings(tick)) for tick in range(TICKS))


def reading(device_id: str, seq: int) -> Reading:
    """One valid reading of ``device_id``, a minute old."""
    return Reading(device_id, "wound_temp", 31.5, "degC", now_us() - 60_000_000 + seq, seq)


def batch(gateway_id: str, seq: int, *devices: str) -> Batch:
    """A batch of one reading per device."""
    return Batch(gateway_id, seq, tuple(reading(d, i) for i, d in enumerate(devices)))


@dataclass
class Plane:
    """The TLS broker, its PKI, the ingest store and the processes started on them."""

    tls: TlsBroker
    work: Path
    store: SQLiteStore
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def registry(self) -> Path:
        """The installed-base file ingest checks devices against."""
        return self.work / "installed-base.json"

    def env(self, identity: str, **settings: str) -> dict[str, str]:
        """The environment of a process that connects as ``identity`` (its certificate's CN)."""
        pki = self.tls.pki
        return {
            **os.environ,
            "VIGIL_CONFIG": str(self.work / "absent.toml"),
            "VIGIL_UPLINK_BROKER__HOST": "localhost",
            "VIGIL_UPLINK_BROKER__PORT": str(self.tls.port),
            "VIGIL_UPLINK_BROKER__TLS_CA_FILE": str(pki.ca_cert_path),
            "VIGIL_UPLINK_BROKER__TLS_CERT_FILE": str(pki.cert_path(identity)),
            "VIGIL_UPLINK_BROKER__TLS_KEY_FILE": str(pki.key_path(identity)),
            **settings,
        }

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start ``vigil -v <args>``, its stderr in ``<name>.log``."""
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(
                [str(VIGIL), "-v", *args],
                env=env,
                cwd=self.work,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        """The log file of process ``name``."""
        return self.work / f"{name}.log"

    def logged(self, name: str) -> str:
        """What process ``name`` has logged so far."""
        path = self.log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def start_ingest(self) -> subprocess.Popen[bytes]:
        """`vigil ingest run` as vigil-ingest, MACing confirmations, checking the installed base."""
        proc = self.spawn(
            "ingest",
            ["ingest", "run", "--no-rules"],
            self.env(
                "vigil-ingest",
                VIGIL_INGEST__STORAGE_URL=f"sqlite:///{self.work / 'ingest.db'}",
                VIGIL_INGEST__CLIENT_ID="plane-ingest",
                VIGIL_INGEST__CONFIRM_KEY_FILE=str(self.tls.pki.confirm_master_path),
                VIGIL_INGEST__INSTALLED_BASE_FILE=str(self.registry),
            ),
        )
        wait_until(
            lambda: SUBSCRIBED in self.logged("ingest") or proc.poll() is not None,
            20,
            "ingest subscribed",
        )
        assert proc.poll() is None, self.logged("ingest")
        return proc

    def start_gateway(self, gateway_id: str, *args: str) -> subprocess.Popen[bytes]:
        """`vigil gateway run` as ``gateway_id`` with its confirmation key, simulating patches."""
        return self.spawn(
            gateway_id,
            ["gateway", "run", "--no-bridge", "--simulate-patches", str(PATCHES), *args],
            self.env(
                gateway_id,
                VIGIL_GATEWAY__ID=gateway_id,
                VIGIL_GATEWAY__OUTBOX_PATH=str(self.work / f"{gateway_id}-outbox.db"),
                VIGIL_GATEWAY__CONFIRM_KEY_FILE=str(self.tls.pki.confirm_key_path(gateway_id)),
                VIGIL_GATEWAY__LINGER_S="0.01",
                VIGIL_GATEWAY__CONFIRM_TIMEOUT_S="1",
                VIGIL_SIMULATOR__TICKS=str(TICKS),
                VIGIL_SIMULATOR__TICK_WALL_S="0.01",
            ),
        )

    def stored_devices(self) -> set[str]:
        """The devices ingest has stored readings of."""
        return {r.device_id for r in self.store.fetch_readings()}


@contextlib.contextmanager
def running_plane(work: Path, acl_text: str | None = None) -> Iterator[Plane]:
    """A TLS broker (generated ACL unless ``acl_text``), identities, an installed base."""
    tls = start_tls_broker(acl_text=acl_text)
    for cn in ("gw-a", "gw-b", "gw-c"):
        tls.pki.issue_client(cn, Role.GATEWAY)
    tls.pki.issue_client("vigil-ingest", Role.SERVICE)
    store = SQLiteStore(str(work / "ingest.db"))
    store.migrate()  # so the test can read before ingest has started
    plane = Plane(tls, work, store)
    devices = {patch_id(i): DeviceEntry(site="site-a") for i in range(PATCHES)}
    devices[FOREIGN] = DeviceEntry(site="site-b")
    base = InstalledBase(
        gateways={"gw-a": "site-a", "gw-b": "site-b", "gw-c": "site-a"}, devices=devices
    )
    plane.registry.write_text(base.dump())
    try:
        yield plane
    finally:
        for proc in plane.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in plane.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        store.close()
        tls.broker.cleanup()
