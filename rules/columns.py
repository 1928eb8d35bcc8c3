"""Columnar batches for the engine: readings as numpy arrays, devices as interned indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract.batch_columns import METRIC_CODES, METRIC_NAMES, ColumnarBatch
from contract.reading import Batch, Reading

__all__ = ["METRIC_CODES", "METRIC_NAMES", "Columns", "DeviceTable", "columns_from_batches"]


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
        """Indices for many ids at once: known ones in one C-level pass over the index."""
        ids = device_ids if isinstance(device_ids, (list, tuple)) else list(device_ids)
        try:
            return np.fromiter(map(self._index.__getitem__, ids), dtype=np.intp, count=len(ids))
        except KeyError:  # some are new: intern them in order
            return np.fromiter(map(self.intern, ids), dtype=np.intp, count=len(ids))


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


def columns_from_batches(batches: Sequence[Batch], devices: DeviceTable) -> Columns:
    """The readings of ``batches`` as engine columns, in order.

    A ``ColumnarBatch`` (what ingest decodes) is used as it is: its few distinct device ids are
    interned once each and its device column is mapped through them; only other batches are
    read reading by reading.
    """
    parts: list[Columns] = []
    for batch in batches:
        if isinstance(batch, ColumnarBatch):
            cols = batch.columns
            lut = devices.intern_many(cols.device_ids)
            parts.append(
                Columns(lut[cols.device], cols.metric.astype(np.intp), cols.value, cols.ts_us)
            )
        elif batch.readings:
            parts.append(columns_from_readings(batch.readings, devices))
    if len(parts) == 1:
        return parts[0]
    if not parts:
        empty = np.zeros(0, dtype=np.intp)
        return Columns(empty, empty, np.zeros(0), np.zeros(0, dtype=np.int64))
    return Columns(
        np.concatenate([p.device for p in parts]),
        np.concatenate([p.metric for p in parts]),
        np.concatenate([p.value for p in parts]),
        np.concatenate([p.ts_us for p in parts]),
    )
