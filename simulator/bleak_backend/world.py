"""Populate a VirtualRadio with patches whose physiology comes from the simulator's fleet."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from simulator.bleak_backend.peripheral import VirtualPatch
from simulator.bleak_backend.radio import VirtualRadio
from simulator.fleet import Fleet, FleetSpec


def patch_address(index: int) -> str:
    """A stable random-static address for the index-th patch (top two bits set, as BLE asks)."""
    return f"C0:7A:1E:{(index >> 16) & 0xFF:02X}:{(index >> 8) & 0xFF:02X}:{index & 0xFF:02X}"


def patch_key(seed: int, index: int) -> bytes:
    """The 16-byte key provisioned into the index-th patch of a seeded world."""
    return hashlib.sha256(f"vigil-patch-key/{seed}/{index}".encode()).digest()[:16]


def populate(
    radio: VirtualRadio,
    spec: FleetSpec,
    *,
    connectable: int | None = None,
    measure_every_s: float = 1.0,
    advert_every_s: float = 1.0,
    history: int = 10_000,
) -> list[VirtualPatch]:
    """Put ``spec.patches`` patches on ``radio``; the first ``connectable`` (all by default)
    accept connections, the rest only advertise (BTHome); each remembers its last ``history``
    measurements for tests to compare with. Same seed, same patches."""
    fleet = Fleet(replace(spec, equipment=0))
    limit = spec.patches if connectable is None else connectable
    patches = [
        VirtualPatch(
            patch_address(i),
            patch_key(spec.seed, i),
            model,
            connectable=i < limit,
            measure_every_s=measure_every_s,
            advert_every_s=advert_every_s,
            rssi=-55 - (i % 40),
            history=history,
        )
        for i, model in enumerate(fleet.patches)
    ]
    radio.extend(patches)
    return patches
