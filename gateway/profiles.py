"""Deployment profiles: one gateway codebase tuned for a hospital ward or a patient's home kit.

``home_kit_profile(keys, "pt-7f3a9c", gateway_id="kit-0042", state_dir=...)`` yields the
``GatewaySettings`` and ``BleConfig`` of a small box or phone serving one patient's patches,
offline for days at a time; ``ward_profile`` the defaults of a ward gateway. See
docs/home-kit.md for the reasoning behind each number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry

from gateway.app import GatewaySettings
from gateway.ble import BleAcquisition, BleConfig, PairedPatch, TimeSource
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.keystore import KeyStore, KeyStoreError
from gateway.uplink import UplinkSettings
from infra.mqtt_tls import MqttTls

# What one patch frame becomes: pH, wound and skin temperature, exudate, battery, status.
READINGS_PER_FRAME: Final = 6
# SQLite bytes per pending outbox reading, measured on a filled outbox (docs/home-kit.md).
OUTBOX_BYTES_PER_READING: Final = 52
HOME_KIT_SLOTS: Final = 2  # a wound, or a wound and a reference patch on healthy skin


def wall_us() -> int:
    """Wall-clock microseconds since the epoch: when a reading was received."""
    return time.time_ns() // 1000


class ProfileKind(StrEnum):
    """Where the gateway runs."""

    WARD = "ward"
    HOME_KIT = "home_kit"


@dataclass(frozen=True, slots=True)
class OutboxSizing:
    """The outbox bound that rides out ``offline_days`` without the uplink, and its arithmetic."""

    offline_days: float
    patches: int
    measure_every_s: float
    readings_per_measurement: int = READINGS_PER_FRAME
    headroom: float = 0.25  # a dressing change overlapping, adverts and frames both heard, drift

    @property
    def readings_per_day(self) -> float:
        """Readings the kit produces per day at full rate."""
        return self.patches * self.readings_per_measurement * 86_400 / self.measure_every_s

    @property
    def max_readings(self) -> int:
        """The bound: the offline period's readings plus headroom, rounded up to a thousand."""
        raw = self.readings_per_day * self.offline_days * (1 + self.headroom)
        return math.ceil(raw / 1000) * 1000

    @property
    def disk_bytes(self) -> int:
        """About how much disk a full outbox takes."""
        return self.max_readings * OUTBOX_BYTES_PER_READING

    def explain(self) -> str:
        """The computation, one line per step, for logs and docs."""
        per_day = self.readings_per_day
        return "\n".join(
            [
                f"{self.patches} patches x {self.readings_per_measurement} readings per measurement"
                f" x 86400 s / {self.measure_every_s:g} s = {per_day:,.0f} readings/day",
                f"x {self.offline_days:g} days offline = {per_day * self.offline_days:,.0f}",
                f"x {1 + self.headroom:g} headroom, rounded up = {self.max_readings:,} readings",
                f"x {OUTBOX_BYTES_PER_READING} B/reading = {self.disk_bytes / 1e6:,.1f} MB of disk",
            ]
        )


@dataclass(frozen=True, slots=True)
class GatewayProfile:
    """Everything a gateway of one kind needs: its settings, BLE tuning and allowlist."""

    kind: ProfileKind
    settings: GatewaySettings
    ble: BleConfig
    paired: tuple[PairedPatch, ...]
    sizing: OutboxSizing | None = field(default=None)

    def acquisition(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] | None = None,
        now_us: Callable[[], int] | None = None,
        time_source: TimeSource | None = None,
    ) -> BleAcquisition:
        """The BLE source of this profile: the system's clocks (NTP state included) unless
        replaced for simulated time."""
        return BleAcquisition(
            self.paired,
            self.ble,
            registry=registry,
            clock=clock,
            now_us=now_us,
            time_source=time_source,
        )


def ward_profile(
    keys: KeyStore,
    *,
    gateway_id: str,
    state_dir: Path,
    uplink: UplinkSettings | None = None,
    site_broker: SiteBrokerSettings | None = None,
) -> GatewayProfile:
    """A ward gateway: every paired patch, as many links as the adapter has, equipment bridged."""
    settings = GatewaySettings(
        gateway_id=gateway_id,
        outbox_path=state_dir / "gateway-outbox.db",
        uplink=uplink or UplinkSettings(),
        site_broker=site_broker,
    )
    ble = BleConfig(
        replay_marks_path=state_dir / "ble-replay-marks.db",
        held_path=state_dir / "ble-held-readings.db",
    )
    return GatewayProfile(ProfileKind.WARD, settings, ble, tuple(keys.paired()))


def home_kit_profile(
    keys: KeyStore,
    patient: str,
    *,
    gateway_id: str,
    state_dir: Path,
    uplink_host: str = "127.0.0.1",
    uplink_port: int = 1883,
    uplink_tls: MqttTls | None = None,
    confirm_key: bytes | None = None,
    offline_days: float = 14.0,
    measure_every_s: float = 60.0,
) -> GatewayProfile:
    """A home kit: one patient's patches only, sized to keep ``offline_days`` of readings."""
    paired = tuple(keys.paired(patient))
    if not paired:
        known = ", ".join(keys.patients()) or "none"
        raise KeyStoreError(f"no patch is paired for patient {patient!r} (patients: {known})")
    if len(paired) > HOME_KIT_SLOTS:
        raise KeyStoreError(
            f"patient {patient!r} has {len(paired)} patches paired; a home kit links at most "
            f"{HOME_KIT_SLOTS}: unpair the dressings that were thrown away"
        )
    # Sized for the kit's capacity, not today's count, so pairing a second patch needs no resize.
    sizing = OutboxSizing(offline_days, HOME_KIT_SLOTS, measure_every_s)
    settings = GatewaySettings(
        gateway_id=gateway_id,
        outbox_path=state_dir / "gateway-outbox.db",
        outbox_max_readings=sizing.max_readings,
        uplink=UplinkSettings(
            host=uplink_host,
            port=uplink_port,
            # Few, large publishes: each wakes the cellular modem, which costs battery and data.
            batch_max_readings=5_000,
            linger_s=5.0,
            max_inflight=2,
            ack_timeout_s=30.0,  # cellular round trips
            reconnect_backoff_max_s=120.0,
            tls=uplink_tls,
            confirm_key=confirm_key,
        ),
        site_broker=None,  # no equipment at home
    )
    ble = BleConfig(
        max_connections=len(paired),
        battery_every_s=3600.0,
        gone_after_s=900.0,  # a patient showering or out of the room is not an incident
        reconnect_after_s=5.0,
        backoff_max_s=600.0,
        wall_poll_s=2.0,
        wall_sweep_s=30.0,
        outbox_readings=5_000,
        # Linked patches notify without scanning; scanning only finds them again after a drop.
        scan_window_s=10.0,
        scan_every_s=60.0,
        replay_marks_path=state_dir / "ble-replay-marks.db",
        held_path=state_dir / "ble-held-readings.db",
        measure_every_s=measure_every_s,
        # A patch at one measurement a minute: a link silent for 10 minutes is given up.
        link_silence_intervals=10.0,
    )
    return GatewayProfile(ProfileKind.HOME_KIT, settings, ble, paired, sizing)
