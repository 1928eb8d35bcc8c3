"""Readings and batches for the storage tests."""

from __future__ import annotations

from contract import Batch, Reading

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
MINUTE_US = 60_000_000


def reading(i: int, device_id: str = "patch-1", metric: str = "wound_temp") -> Reading:
    """The i-th reading of a device's metric, one minute apart."""
    unit = {"wound_temp": "degC", "wound_ph": "pH", "battery": "%"}[metric]
    value = 6.0 + (i % 20) / 10 if metric == "wound_ph" else 30.0 + (i % 50) / 10
    return Reading(device_id, metric, value, unit, T0_US + i * MINUTE_US, i)


def batch(batch_seq: int, readings: list[Reading], gateway_id: str = "gw-1") -> Batch:
    """A batch of the given readings."""
    return Batch(gateway_id, batch_seq, tuple(readings))


def batches(count: int, size: int, gateway_id: str = "gw-1", start: int = 0) -> list[Batch]:
    """``count`` disjoint batches of ``size`` readings, numbered from ``start``, over devices."""
    out = []
    for b in range(count):
        rows = [
            reading(start + b * size + i, f"patch-{i % 3}", ("wound_temp", "battery")[i % 2])
            for i in range(size)
        ]
        out.append(batch(b, rows, gateway_id))
    return out
