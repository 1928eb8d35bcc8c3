"""Columnar batches for the engine: readings as numpy arrays, devices as interned indices."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contract.batch_columns import METRIC_CODES, METRIC_NAMES, ColumnarBatch
from contract.reading import Batch, Reading

__all__ = ["METRIC_CODES", "METRIC_NAMES", "Columns", "DeviceTable", "columns_from_batches"]


# Joins a batch's device ids into one cache key; a table whose ids contain it is not cached.
_SEPARATOR = "\x00"
_IDENTITY_ENTRIES = 4096


class DeviceTable:
    """Interns device ids to dense indices so the hot path never touches strings.

    Indices are never reassigned (ids are only appended), so an index array computed for a
    batch's device table stays right for as long as this table lives: ``lookup_table`` keeps
    the recent ones. A gateway sends the same devices batch after batch; one string join and
    one hash then replace a dict lookup (a fresh string hashed, a probe, a compare) per device.
    """

    def __init__(self, ids: Iterable[str] = (), *, cached_ids: int = 1 << 18) -> None:
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        # Batch device tables seen recently → their indices, least recently used first;
        # bounded by the ids they hold together (a key costs ~ its text, an index 8 bytes).
        self._tables: OrderedDict[str, NDArray[np.intp]] = OrderedDict()
        self._cached_ids = 0
        self.cached_ids_max = cached_ids
        # The same tables by identity: the decoder hands back the very tuple of a device table
        # it has seen recently (``contract.batch_decode.device_table``), so no key is built.
        # Each entry holds its tuple, so an id cannot be reused while it is here.
        self._by_identity: dict[int, tuple[tuple[str, ...], NDArray[np.intp]]] = {}
        self._identity_ids = 0
        self.table_hits = 0
        self.table_misses = 0
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

    def intern_many(
        self, device_ids: Iterable[str], rows: NDArray[np.integer] | None = None
    ) -> NDArray[np.intp]:
        """Indices for many ids at once: known ones in one C-level pass over the index.

        New ids are interned in order, or, given ``rows`` (indices into ``device_ids``), in
        the order the rows first name them.
        """
        ids = device_ids if isinstance(device_ids, (list, tuple)) else list(device_ids)
        try:
            return np.fromiter(map(self._index.__getitem__, ids), dtype=np.intp, count=len(ids))
        except KeyError:  # some are new
            if rows is not None:
                self._intern_as_named(ids, rows)
            return np.fromiter(map(self.intern, ids), dtype=np.intp, count=len(ids))

    def lookup_table(
        self, device_ids: Sequence[str], rows: NDArray[np.integer] | None = None
    ) -> NDArray[np.intp]:
        """``intern_many(device_ids)`` for a batch's device table, from the cache if it is
        a table seen recently (same ids in the same order). Do not modify the result.

        ``rows``: the batch's device column (indices into ``device_ids``). Ids new to this
        table are then interned in the order the rows first name them, not in the table's
        order (a gateway lists its devices sorted): a fleet's series indices then follow the
        order its readings arrive in, which the engine processes fastest.
        """
        known = self._by_identity.get(id(device_ids))
        if known is not None and known[0] is device_ids:
            self.table_hits += 1
            return known[1]
        lut = self._lookup_by_key(device_ids, rows)
        if isinstance(device_ids, tuple) and not lut.flags.writeable:  # immutable, cached
            self._identity_ids += len(lut)
            if len(self._by_identity) >= _IDENTITY_ENTRIES or (
                self._identity_ids > self.cached_ids_max
            ):
                self._by_identity.clear()  # bounded as the keyed cache is; refills in a turn
                self._identity_ids = len(lut)
            self._by_identity[id(device_ids)] = (device_ids, lut)
        return lut

    def _intern_as_named(self, device_ids: Sequence[str], rows: NDArray[np.integer]) -> None:
        """Intern the new ids of ``device_ids`` in the order ``rows`` first names them."""
        named, first = np.unique(rows, return_index=True)
        for i in named[np.argsort(first)].tolist():
            if 0 <= i < len(device_ids):
                self.intern(device_ids[i])

    def _lookup_by_key(
        self, device_ids: Sequence[str], rows: NDArray[np.integer] | None
    ) -> NDArray[np.intp]:
        key = _SEPARATOR.join(device_ids)
        found = self._tables.get(key)
        # Cached tables hold no separator inside an id, so a table joining to the same key
        # with as many ids is that very table.
        if found is not None and len(found) == len(device_ids):
            self._tables.move_to_end(key)
            self.table_hits += 1
            return found
        self.table_misses += 1
        lut = self.intern_many(device_ids, rows)
        n = len(device_ids)
        if n > self.cached_ids_max or key.count(_SEPARATOR) != n - 1:
            return lut  # too big to keep, or ambiguous (an id holds the separator)
        lut.flags.writeable = False
        self._tables[key] = lut
        self._cached_ids += n
        while self._cached_ids > self.cached_ids_max:
            _, dropped = self._tables.popitem(last=False)
            self._cached_ids -= len(dropped)
        return lut


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
    if all(isinstance(batch, ColumnarBatch) for batch in batches):
        return _columns_of_columnar(batches, devices)  # type: ignore[arg-type]
    parts: list[Columns] = []
    for batch in batches:
        if isinstance(batch, ColumnarBatch):
            parts.append(_columns_of_columnar([batch], devices))
        elif batch.readings:
            parts.append(columns_from_readings(batch.readings, devices))
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return _columns_of_columnar([], devices)
    return Columns(
        np.concatenate([p.device for p in parts]),
        np.concatenate([p.metric for p in parts]),
        np.concatenate([p.value for p in parts]),
        np.concatenate([p.ts_us for p in parts]),
    )


def _columns_of_columnar(batches: Sequence[ColumnarBatch], devices: DeviceTable) -> Columns:
    """Decoded batches as one set of engine columns, each column filled in place once."""
    n = sum(len(batch) for batch in batches)
    out = Columns(
        np.empty(n, dtype=np.intp),
        np.empty(n, dtype=np.intp),
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.int64),
    )
    at = 0
    for batch in batches:
        cols = batch.columns
        end = at + len(cols)
        lut = devices.lookup_table(cols.device_ids, cols.device)
        np.take(lut, cols.device, out=out.device[at:end])
        out.metric[at:end] = cols.metric
        out.value[at:end] = cols.value
        out.ts_us[at:end] = cols.ts_us
        at = end
    return out
