"""Wire version 2 of batches: a binary columnar envelope that decodes with no per-reading work.

Layout (little-endian)::

    b"VGB\\x02"                      magic and version (v1 is JSON and starts with "{")
    u32 H                            length of the header
    H bytes of JSON                  {"gateway_id", "batch_seq", "count",
                                      "devices": [id, ...], "series": [[metric, unit], ...]}
    zero padding to a multiple of 8
    f64[count] value, i64[count] ts_us, i64[count] seq,
    u32[count] device (index into devices), u32[count] series (index into series)

Device ids and (metric, unit) pairs are sent once per batch; readings refer to them by index.
The packer lists device ids sorted (``canonical_devices``), not in the order they were heard:
a gateway whose batches hold the same devices then sends the same table every time, whatever
order its radios heard them in, and receivers recognise the table instead of looking up each
id again (``rules.columns.DeviceTable``). Decoders accept any order.
Encoding needs only the standard library (gateways run without numpy); decoding is in
``contract.batch_decode``.

``PackedColumns`` holds readings in exactly these columns, so the gateway's outbox stores what
it appends in this layout and cuts, merges and sends batches without a ``Reading`` per reading
(``PackedBatch`` builds them only for code that asks).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from contract.lazy_batch import LazyBatch
from contract.reading import Batch, Reading

MAGIC_V2 = b"VGB\x02"
ALIGN = 8
_HEADER_LEN = struct.Struct("<I")
_BIG_ENDIAN = sys.byteorder == "big"
_Key = TypeVar("_Key", str, tuple[str, str])
# (name, array typecode, bytes per reading) in wire order.
_COLUMNS = (
    ("value", "d", 8),
    ("ts_us", "q", 8),
    ("seq", "q", 8),
    ("device", "I", 4),
    ("pair", "I", 4),
)
COLUMN_BYTES = sum(size for _, _, size in _COLUMNS)  # value, ts_us, seq, device, series


@dataclass(frozen=True, slots=True, eq=False)
class PackedColumns:
    """Readings as the v2 wire columns: the tables, then one little-endian array per column."""

    devices: tuple[str, ...]
    series: tuple[tuple[str, str], ...]  # (metric, unit)
    value: bytes  # f64
    ts_us: bytes  # i64
    seq: bytes  # i64
    device: bytes  # u32 index into devices
    pair: bytes  # u32 index into series

    def __len__(self) -> int:
        return len(self.value) // 8

    @classmethod
    def of(cls, readings: Sequence[Reading]) -> PackedColumns:
        """Pack readings; OverflowError if a timestamp or seq does not fit 64 bits."""
        # One transpose, then C-level passes (map, array): no Python code runs per reading.
        fields = zip(*readings, strict=True) if readings else ((),) * 6
        device_id, metric, value, unit, ts_us, seq = fields
        devices = {d: i for i, d in enumerate(canonical_devices(set(device_id)))}
        series = {p: i for i, p in enumerate(dict.fromkeys(zip(metric, unit, strict=True)))}
        return cls(
            tuple(devices),
            tuple(series),
            _le_bytes(array("d", value)),
            _le_bytes(array("q", ts_us)),
            _le_bytes(array("q", seq)),
            _le_bytes(array("I", map(devices.__getitem__, device_id))),
            _le_bytes(array("I", map(series.__getitem__, zip(metric, unit, strict=True)))),
        )

    @classmethod
    def parse(cls, payload: bytes, start: int = 0, stop: int | None = None) -> PackedColumns:
        """Readings ``start:stop`` of a v2 payload this module wrote (trusted: not validated)."""
        bounds = header_bounds(payload) if payload.startswith(MAGIC_V2) else None
        if bounds is None:
            raise ValueError("not a v2 payload")
        head_start, head_end, at = bounds
        head = json.loads(payload[head_start:head_end])
        count = int(head["count"])
        stop = count if stop is None else min(stop, count)
        start = min(max(0, start), stop)
        columns: list[bytes] = []
        for _, _, size in _COLUMNS:
            columns.append(payload[at + start * size : at + stop * size])
            at += count * size
        devices = tuple(str(d) for d in head["devices"])
        series = tuple((str(m), str(u)) for m, u in head["series"])
        return cls(devices, series, *columns)

    def payload(self, gateway_id: str, batch_seq: int) -> bytes:
        """These readings as a v2 wire payload of batch ``batch_seq``."""
        header = json.dumps(
            {
                "gateway_id": gateway_id,
                "batch_seq": batch_seq,
                "count": len(self),
                "devices": list(self.devices),
                "series": [list(pair) for pair in self.series],
            },
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
        head = MAGIC_V2 + _HEADER_LEN.pack(len(header)) + header
        head += b"\x00" * (-len(head) % ALIGN)
        return b"".join((head, self.value, self.ts_us, self.seq, self.device, self.pair))

    def slice(self, start: int, stop: int) -> PackedColumns:
        """Readings ``start:stop``, same tables."""
        return PackedColumns(
            self.devices,
            self.series,
            *(getattr(self, name)[start * size : stop * size] for name, _, size in _COLUMNS),
        )

    @classmethod
    def concat(cls, parts: Sequence[PackedColumns]) -> PackedColumns:
        """The parts' readings in order, under one device table and one series table.

        The device table is the parts' ids in canonical order. Parts that share their tables
        (a fleet appends the same devices tick after tick) are joined as bytes; only a part
        whose tables differ has its indices remapped.
        """
        if not parts:
            return cls.of(())
        tables = {part.devices for part in parts}  # usually one
        merged = canonical_devices(set().union(*tables))
        devices = {d: i for i, d in enumerate(merged)}
        series: dict[tuple[str, str], int] = {}
        device_parts: list[bytes] = []
        pair_parts: list[bytes] = []
        for part in parts:
            device_parts.append(_remap(part.device, part.devices, devices))
            pair_parts.append(_remap(part.pair, part.series, series))
        return cls(
            merged,
            tuple(series),
            b"".join(p.value for p in parts),
            b"".join(p.ts_us for p in parts),
            b"".join(p.seq for p in parts),
            b"".join(device_parts),
            b"".join(pair_parts),
        )

    def readings(self) -> tuple[Reading, ...]:
        """Every row as a contract Reading, in order (slow: for code that needs objects)."""
        devices, series = self.devices, self.series
        pairs = [series[i] for i in _le_array("I", self.pair)]
        return tuple(
            map(
                Reading,
                map(devices.__getitem__, _le_array("I", self.device)),
                [metric for metric, _ in pairs],
                _le_array("d", self.value).tolist(),
                [unit for _, unit in pairs],
                _le_array("q", self.ts_us).tolist(),
                _le_array("q", self.seq).tolist(),
            )
        )

    def ts_at(self, row: int) -> int:
        """The timestamp of row ``row``."""
        return int(struct.unpack_from("<q", self.ts_us, row * 8)[0])


class PackedBatch(LazyBatch[PackedColumns]):
    """A ``Batch`` held as ``PackedColumns``: encodes with no per-reading work."""

    __slots__ = ()


def encode_batch_v2(batch: Batch) -> bytes:
    """Serialise ``batch`` as wire version 2.

    Raises OverflowError if a timestamp or seq does not fit 64 bits (the JSON version can
    still carry it, for the receiver to reject).
    """
    if isinstance(batch, PackedBatch):
        return batch.columns.payload(batch.gateway_id, batch.batch_seq)
    return PackedColumns.of(batch.readings).payload(batch.gateway_id, batch.batch_seq)


def canonical_devices(device_ids: Iterable[str]) -> tuple[str, ...]:
    """The order in which a packed table lists ``device_ids`` (distinct): sorted by code point."""
    return tuple(sorted(device_ids))


def header_bounds(payload: bytes) -> tuple[int, int, int] | None:
    """(header start, header end, column start) of a v2 payload, or None if it is too short."""
    if len(payload) < len(MAGIC_V2) + _HEADER_LEN.size:
        return None
    (length,) = _HEADER_LEN.unpack_from(payload, len(MAGIC_V2))
    start = len(MAGIC_V2) + _HEADER_LEN.size
    end = start + length
    return start, end, end + (-end % ALIGN)


def _le_bytes(column: array[Any]) -> bytes:
    """A native array as little-endian bytes."""
    if _BIG_ENDIAN:
        column.byteswap()
    return column.tobytes()


def _le_array(typecode: str, data: bytes) -> array[Any]:
    """Little-endian bytes as a native array."""
    column: array[Any] = array(typecode)
    column.frombytes(data)
    if _BIG_ENDIAN:
        column.byteswap()
    return column


def _remap(indices: bytes, table: tuple[_Key, ...], merged: dict[_Key, int]) -> bytes:
    """``indices`` into ``table`` re-expressed as indices into ``merged`` (extended as needed)."""
    new = [merged.setdefault(key, len(merged)) for key in table]
    if all(i == n for i, n in enumerate(new)):
        return indices  # the part's table is a prefix of the merged one: nothing moves
    return _le_bytes(array("I", map(new.__getitem__, _le_array("I", indices))))
