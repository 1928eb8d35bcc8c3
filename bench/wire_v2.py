"""Wire v2 batch payloads built straight from numpy columns, for load generators.

``contract.batch_binary.encode_batch_v2`` builds the same layout from ``Reading`` objects (as a
gateway does, without numpy); building 100,000s of objects per second would make the load
generator, not the component under test, the bottleneck. The device table is sent in the order
given, so a generator can send the same table batch after batch as a ward gateway does.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from contract.batch_binary import ALIGN, MAGIC_V2


def payload_v2(
    gateway_id: str,
    batch_seq: int,
    devices: Sequence[str],
    series: Sequence[tuple[str, str]],
    columns: tuple[NDArray[np.integer], NDArray[np.integer], NDArray[np.floating], ...],
) -> bytes:
    """A v2 payload: ``columns`` are (device index, series index, value, ts_us, seq)."""
    device, pair, value, ts_us, seq = columns
    header = json.dumps(
        {
            "gateway_id": gateway_id,
            "batch_seq": batch_seq,
            "count": len(value),
            "devices": list(devices),
            "series": [list(p) for p in series],
        },
        separators=(",", ":"),
    ).encode()
    head = MAGIC_V2 + struct.pack("<I", len(header)) + header
    head += b"\x00" * (-len(head) % ALIGN)
    body = (
        np.ascontiguousarray(value, dtype="<f8"),
        np.ascontiguousarray(ts_us, dtype="<i8"),
        np.ascontiguousarray(seq, dtype="<i8"),
        np.ascontiguousarray(device, dtype="<u4"),
        np.ascontiguousarray(pair, dtype="<u4"),
    )
    return head + b"".join(c.tobytes() for c in body)
