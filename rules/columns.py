"""Columnar batches for the engine: readings as numpy arrays, devices as interned indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract.catalog import METRICS
from contract.reading import Reading

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
METRIC_CODES: dict[str, int] = {name: code for code, name in enumerate(METRIC_NAMES)}


class DeviceTable:
    """Interns device ids to dense indices so the hot path never touches strings."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        for device_id in ids:
            self.intern(device_id)

    def __len__(self) -> int:
        return len(self.ids)

    def intern(self, device_id: str) -> int:
        """The index of ``device_id``, assigning the next one if it is new."""
        index = self._index.get(device_id)
        if index is None:
            index = self._index[device_id] = len(self.ids)
            self.ids.append(device_id)
        return index

    def get(self, device_id: str) -> int | None:
        """The index of a known device, else None."""
        return self._index.get(device_id)

    def intern_many(self, device_ids: Iterable[str]) -> NDArray[np.intp]:
        """Indices for many ids at once."""
        return np.fromiter((self.intern(d) for d in device_ids), dtype=np.intp)


@dataclass(frozen=True, slots=True)
class Columns:
    """One batch as aligned columns: device index, metric code, value and timestamp."""

    device: NDArray[np.intp]
    metric: NDArray[np.intp]
    value: NDArray[np.float64]
    ts_us: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.value.shape[0])


def columns_from_readings(readings: Sequence[Reading], devices: DeviceTable) -> Columns:
    """Convert contract readings to columns, interning their devices in ``devices``."""
    try:
        metric = np.fromiter(
            (METRIC_CODES[r.metric] for r in readings), dtype=np.intp, count=len(readings)
        )
    except KeyError as exc:
        raise ValueError(f"unknown metric {exc.args[0]!r}") from None
    return Columns(
        device=devices.intern_many(r.device_id for r in readings),
        metric=metric,
        value=np.fromiter((r.value for r in readings), dtype=np.float64, count=len(readings)),
        ts_us=np.fromiter((r.ts_us for r in readings), dtype=np.int64, count=len(readings)),
    )
