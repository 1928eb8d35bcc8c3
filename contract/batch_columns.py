"""A batch held as numpy columns: what ingest decodes, stores and hands to the rules.

Readings of one batch travel as aligned columns (device index into the batch's own device
table, catalog metric code, value, timestamp, seq) from the wire to the COPY stream and the rule
engine; no ``Reading`` is built on that path. ``ColumnarBatch`` is still a ``Batch``: code that
wants ``readings`` (the SQLite store, tests, replays) gets them, built on first use.
Needs numpy (the server roles'); a gateway never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract.catalog import METRICS
from contract.lazy_batch import LazyBatch
from contract.reading import Batch, Reading

# Catalog order is the metric code: the rules' columns use the same (rules.columns).
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
METRIC_CODES: dict[str, int] = {name: code for code, name in enumerate(METRIC_NAMES)}
METRIC_UNITS: tuple[str, ...] = tuple(METRICS[name].unit for name in METRIC_NAMES)
_UNIT_OF: dict[object, str] = {name: spec.unit for name, spec in METRICS.items()}


@dataclass(frozen=True, slots=True, eq=False)
class ReadingColumns:
    """Valid readings as aligned columns; ``device`` indexes ``device_ids``."""

    device_ids: tuple[str, ...]
    device: NDArray[np.int32]
    metric: NDArray[np.uint8]  # METRIC_CODES; the unit is the catalog's (validated)
    value: NDArray[np.float64]
    ts_us: NDArray[np.int64]
    seq: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.value.shape[0])

    def take(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> ReadingColumns:
        """The readings selected by a mask or index array, same device table."""
        return ReadingColumns(
            self.device_ids,
            self.device[rows],
            self.metric[rows],
            self.value[rows],
            self.ts_us[rows],
            self.seq[rows],
        )

    def reading(self, row: int) -> Reading:
        """Row ``row`` as a contract Reading."""
        code = int(self.metric[row])
        return Reading(
            self.device_ids[int(self.device[row])],
            METRIC_NAMES[code],
            float(self.value[row]),
            METRIC_UNITS[code],
            int(self.ts_us[row]),
            int(self.seq[row]),
        )

    def readings(self) -> tuple[Reading, ...]:
        """Every row as a contract Reading, in order (slow: for code that needs objects)."""
        ids = self.device_ids
        return tuple(
            Reading(ids[d], METRIC_NAMES[m], v, METRIC_UNITS[m], t, s)
            for d, m, v, t, s in zip(
                self.device.tolist(),
                self.metric.tolist(),
                self.value.tolist(),
                self.ts_us.tolist(),
                self.seq.tolist(),
                strict=True,
            )
        )

    @classmethod
    def of(cls, readings: Sequence[Reading]) -> ReadingColumns:
        """Columns of valid contract readings (KeyError on a metric not in the catalog)."""
        table: dict[str, int] = {}
        device = [table.setdefault(r.device_id, len(table)) for r in readings]
        n = len(readings)
        return cls(
            tuple(table),
            np.array(device, dtype=np.int32),
            np.fromiter((METRIC_CODES[r.metric] for r in readings), dtype=np.uint8, count=n),
            np.fromiter((r.value for r in readings), dtype=np.float64, count=n),
            np.fromiter((r.ts_us for r in readings), dtype=np.int64, count=n),
            np.fromiter((r.seq for r in readings), dtype=np.int64, count=n),
        )


class ColumnarBatch(LazyBatch[ReadingColumns]):
    """A ``Batch`` whose readings are held as ``ReadingColumns`` (numpy)."""

    __slots__ = ()


def as_columnar(batch: Batch) -> ColumnarBatch | None:
    """``batch`` as a ColumnarBatch (itself if it already is one).

    None when columns cannot represent it exactly: a metric outside the catalog or with
    another unit, a timestamp or seq beyond 64 bits, a value that is no number (only a
    batch that skipped the contract can hold those; it is written row by row).
    """
    if isinstance(batch, ColumnarBatch):
        return batch
    readings = batch.readings
    if not all(_UNIT_OF.get(r.metric) == r.unit for r in readings):
        return None
    try:
        columns = ReadingColumns.of(readings)
    except (OverflowError, TypeError, ValueError):
        return None
    return ColumnarBatch(batch.gateway_id, batch.batch_seq, columns)
