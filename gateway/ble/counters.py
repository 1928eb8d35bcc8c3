"""What BLE acquisition accepted and refused, exported to Prometheus and readable in tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)


class RejectReason(StrEnum):
    """Why bytes from the air never became readings."""

    UNKNOWN_DEVICE = "unknown_device"  # looks like a patch, but is not on the allowlist
    # AES-CCM cannot tell a spoofer from a patch sealing with a key we do not hold (re-keyed,
    # mis-provisioned) or from tampered bytes: all three fail the MIC and land here.
    AUTH_FAILED = "auth_failed"
    REPLAYED = "replayed"  # authentic, but its counter is not above the last accepted one
    MALFORMED = "malformed"  # wrong length/version, or authentic but out of range


@dataclass
class BleCounters:
    """One registry per acquisition, so several can share a process (tests, benchmarks)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # device id → BTHome object id → adverts that carried it unused (health, doctor, tests)
    unknown_objects: dict[str, dict[int, int]] = field(default_factory=dict)

    def unknown_bthome(self, device_id: str, object_ids: tuple[int, ...]) -> None:
        """Count the BTHome object ids one advert of ``device_id`` carried that vigil skips."""
        per_device = self.unknown_objects.setdefault(device_id, {})
        for object_id in object_ids:
            per_device[object_id] = per_device.get(object_id, 0) + 1
            self.bthome_unknown.labels(f"0x{object_id:02x}").inc()

    def __post_init__(self) -> None:
        r = self.registry
        self._rejected = Counter(
            "vigil_ble_rejected", "Frames and adverts refused, by reason", ["reason"], registry=r
        )
        self._accepted = Counter(
            "vigil_ble_accepted", "Authentic new frames and adverts", ["channel"], registry=r
        )
        self.readings = Counter("vigil_ble_readings", "Readings handed to the sink", registry=r)
        self.held_back = Counter(
            "vigil_ble_values_held_back", "Authentic values not turned into readings", registry=r
        )
        self.duplicate_adverts = Counter(
            "vigil_ble_duplicate_adverts", "Repeats of the last advert (normal)", registry=r
        )
        self.connects = Counter("vigil_ble_connects", "Connections established", registry=r)
        self.drops = Counter("vigil_ble_drops", "Connections lost or ended", registry=r)
        self.link_failures = Counter(
            "vigil_ble_link_failures", "Connection attempts or links that failed", registry=r
        )
        self.gone = Counter("vigil_ble_patches_gone", "Patches declared silent", registry=r)
        self.hts = Counter(
            "vigil_ble_hts_indications",
            "Health Thermometer indications, by outcome (stored, framed, refused)",
            ["outcome"],
            registry=r,
        )
        self.bthome_unknown = Counter(
            "vigil_ble_bthome_unknown_objects",
            "BTHome objects skipped (ids vigil does not use); the advert's known values are kept",
            ["object_id"],
            registry=r,
        )
        self.outbox_overflow = Counter(
            "vigil_ble_outbox_overflow", "Readings dropped: the sink fell behind", registry=r
        )
        self.unflushed = Counter(
            "vigil_ble_unflushed", "Readings lost at stop: the sink did not take them", registry=r
        )
        self.connected = Gauge(
            "vigil_ble_slots_in_use",
            "Connection slots in use (connecting or connected)",
            registry=r,
        )
        self._field_counters(r)
        self._seen: dict[tuple[str, RejectReason], int] = {}
        # Labelled children looked up once: ``labels()`` takes a lock on every call.
        self._accepted_by = {c: self._accepted.labels(c) for c in ("notify", "advert")}

    def _field_counters(self, r: CollectorRegistry) -> None:
        """What the gateway does about BlueZ's failure modes, and the clock (docs/ble-field.md)."""
        self.adverts = Counter(
            "vigil_ble_adverts", "Advert callbacks from every scanner (any device)", registry=r
        )
        self.duplicate_frames = Counter(
            "vigil_ble_duplicate_frames",
            "Byte-identical repeats of the last accepted notification (doubled by the stack)",
            registry=r,
        )
        self.scanner_starts = Counter(
            "vigil_ble_scanner_starts", "Scanner starts that succeeded", registry=r
        )
        self.scanner_start_failures = Counter(
            "vigil_ble_scanner_start_failures", "Scanner start attempts that failed", registry=r
        )
        self.scanner_stop_failures = Counter(
            "vigil_ble_scanner_stop_failures", "Scanner stops that failed or timed out", registry=r
        )
        self.scanner_restarts = Counter(
            "vigil_ble_scanner_restarts",
            "Scanner restarts by the watchdog (silence, or Discovering dropped)",
            registry=r,
        )
        self.power_cycles = Counter(
            "vigil_ble_adapter_power_cycles", "Adapters power-cycled to recover", registry=r
        )
        self.silent_hangups = Counter(
            "vigil_ble_silent_hangups",
            "Links hung up because no authentic frame came for too long",
            registry=r,
        )
        self.cache_clears = Counter(
            "vigil_ble_gatt_cache_clears",
            "BlueZ device caches cleared (characteristic missing, or a connect in progress)",
            registry=r,
        )
        self.stale_links = Counter(
            "vigil_ble_stale_links",
            "Links BlueZ already held at start-up, adopted or closed",
            ["action"],
            registry=r,
        )
        self.slot_waits = Counter(
            "vigil_ble_slot_waits",
            "Connects that waited for a free slot (no per-patch backoff)",
            registry=r,
        )
        self.gatt_read_failures = Counter(
            "vigil_ble_gatt_read_failures",
            "Best-effort GATT reads that failed (the link streams on)",
            ["what"],
            registry=r,
        )
        self.held = Gauge(
            "vigil_ble_held_readings", "Readings waiting for a trusted clock", registry=r
        )
        self.restamped = Counter(
            "vigil_ble_restamped_readings",
            "Held readings re-stamped once the clock was trusted",
            registry=r,
        )
        self.time_unknown = Counter(
            "vigil_ble_time_unknown_readings",
            "Held readings whose time could not be recovered (dead-lettered)",
            registry=r,
        )
        self.clock_trusted = Gauge(
            "vigil_ble_clock_trusted", "1 if the wall clock is trusted for stamping", registry=r
        )
        self.adapters = Gauge("vigil_ble_adapters", "Bluetooth adapters in use", registry=r)
        self.scanning = Gauge(
            "vigil_ble_scanning_adapters", "Adapters whose scanner is running", registry=r
        )

    def reject(self, address: str, reason: RejectReason, detail: str = "") -> None:
        """Count a refusal and log it, at powers of two per device and reason (no log floods)."""
        self._rejected.labels(reason.value).inc()
        if len(self._seen) > 10_000:  # rotating private addresses would grow this forever
            self._seen.clear()
        n = self._seen.get((address, reason), 0) + 1
        self._seen[(address, reason)] = n
        if n & (n - 1) == 0:
            log.warning("BLE %s from %s (%d so far): %s", reason.value, address, n, detail)

    def accept(self, channel: str) -> None:
        """Count an authentic, new frame (``notify``) or advert (``advert``)."""
        child = self._accepted_by.get(channel)
        (child if child is not None else self._accepted.labels(channel)).inc()

    def rejected(self, reason: RejectReason) -> int:
        """How many refusals for ``reason`` so far."""
        return int(self.value("vigil_ble_rejected_total", reason=reason.value))

    def accepted(self, channel: str) -> int:
        """How many authentic new frames or adverts on ``channel`` so far."""
        return int(self.value("vigil_ble_accepted_total", channel=channel))

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample, e.g. ``value('vigil_ble_readings_total')``."""
        result = self.registry.get_sample_value(name, labels or None)
        return float(result or 0.0)
