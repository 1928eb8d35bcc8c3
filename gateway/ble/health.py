"""The BLE part of the gateway's health message, from an acquisition's live state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from contract.health import AdapterHealth, BleHealth
from gateway.ble.counters import RejectReason

if TYPE_CHECKING:
    from gateway.ble.acquisition import BleAcquisition


def summary(acquisition: BleAcquisition) -> BleHealth:
    """Adapters, scanning, adverts per second since the last summary, links, slots, rejects."""
    adapters: list[AdapterHealth] = []
    slots = 0
    for runner in acquisition.runners.values():
        info = runner.info
        links = runner.links
        slots += links.capacity
        adapters.append(
            AdapterHealth(
                address=runner.key,
                name=runner.name or "default",
                powered=None if info is None else info.powered,
                discovering=runner.discovering(),
                scanning=runner.scan.scanning,
                links=len(links.links),
                slots=links.capacity,
                slots_free=links.free(),
                queued=links.queued,
            )
        )
    counters = acquisition.counters
    return BleHealth(
        adapters=adapters,
        scanning=acquisition.scanning,
        adverts_per_s=_advert_rate(acquisition),
        links=len(acquisition.connected),
        slots=slots,
        patches_paired=len(acquisition.patches),
        patches_gone=len(acquisition.gone),
        rejects={r.value: counters.rejected(r) for r in RejectReason},
        held_readings=acquisition.delivery.held.count,
    )


def _advert_rate(acquisition: BleAcquisition) -> float:
    """Adverts per wall second since the previous call."""
    now = time.monotonic()
    total = acquisition.counters.value("vigil_ble_adverts_total")
    then, before = acquisition.adverts_mark
    acquisition.adverts_mark = (now, total)
    elapsed = now - then
    return round(max(0.0, total - before) / elapsed, 2) if elapsed > 0 else 0.0
