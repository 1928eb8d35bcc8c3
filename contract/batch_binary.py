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
Encoding needs only the standard library (gateways run without numpy); decoding is in
``contract.batch_decode``.
"""

from __future__ import annotations

import json
import struct
import sys
from array import array

from contract.reading import Batch

MAGIC_V2 = b"VGB\x02"
ALIGN = 8
_HEADER_LEN = struct.Struct("<I")


def encode_batch_v2(batch: Batch) -> bytes:
    """Serialise ``batch`` as wire version 2.

    Raises OverflowError if a timestamp or seq does not fit 64 bits (the JSON version can
    still carry it, for the receiver to reject).
    """
    readings = batch.readings
    # One transpose, then C-level passes (map, array): no Python code runs per reading.
    fields = zip(*readings, strict=True) if readings else ((),) * 6
    device_id, metric, value, unit, ts_us, seq = fields
    devices = {d: i for i, d in enumerate(dict.fromkeys(device_id))}
    series = {p: i for i, p in enumerate(dict.fromkeys(zip(metric, unit, strict=True)))}
    device = array("I", map(devices.__getitem__, device_id))
    pairs = array("I", map(series.__getitem__, zip(metric, unit, strict=True)))
    values = array("d", value)
    stamps = array("q", ts_us)
    seqs = array("q", seq)
    header = json.dumps(
        {
            "gateway_id": batch.gateway_id,
            "batch_seq": batch.batch_seq,
            "count": len(readings),
            "devices": list(devices),
            "series": [list(pair) for pair in series],
        },
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    head = MAGIC_V2 + _HEADER_LEN.pack(len(header)) + header
    head += b"\x00" * (-len(head) % ALIGN)
    columns = (values, stamps, seqs, device, pairs)
    if sys.byteorder == "big":
        for column in columns:
            column.byteswap()
    return head + b"".join(column.tobytes() for column in columns)


def header_bounds(payload: bytes) -> tuple[int, int, int] | None:
    """(header start, header end, column start) of a v2 payload, or None if it is too short."""
    if len(payload) < len(MAGIC_V2) + _HEADER_LEN.size:
        return None
    (length,) = _HEADER_LEN.unpack_from(payload, len(MAGIC_V2))
    start = len(MAGIC_V2) + _HEADER_LEN.size
    end = start + length
    return start, end, end + (-end % ALIGN)


COLUMN_BYTES = 8 + 8 + 8 + 4 + 4  # value, ts_us, seq, device, series
