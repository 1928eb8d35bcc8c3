"""The binary COPY stream built from columns: parsed back, it holds exactly the batches' rows."""

from __future__ import annotations

import struct
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from contract import Batch, Reading
from contract.batch_columns import as_columnar
from infra.telemetry.copy_columns import COPY_HEADER, PG_EPOCH_US, copy_chunks
from tests.contract.strategies import valid_readings

Row = tuple[int, str, str, float, str, int, str, int]


def _parse(stream: bytes) -> list[Row]:
    """PostgreSQL's binary COPY format, read back for the readings table's eight columns."""
    assert stream.startswith(COPY_HEADER)
    at, rows = len(COPY_HEADER), []
    while True:
        (fields,) = struct.unpack_from(">h", stream, at)
        at += 2
        if fields == -1:
            assert at == len(stream)
            return rows
        assert fields == 8
        raw = []
        for _ in range(fields):
            (length,) = struct.unpack_from(">i", stream, at)
            raw.append(stream[at + 4 : at + 4 + length])
            at += 4 + length
        ts, dev, metric, value, unit, seq, gw, bseq = raw
        rows.append(
            (
                struct.unpack(">q", ts)[0] + PG_EPOCH_US,
                dev.decode(),
                metric.decode(),
                struct.unpack(">d", value)[0],
                unit.decode(),
                struct.unpack(">q", seq)[0],
                gw.decode(),
                struct.unpack(">q", bseq)[0],
            )
        )


@given(
    st.lists(
        st.tuples(st.sampled_from(["gw-1", "ward-3-gateway", "网关"]), st.lists(valid_readings())),
        max_size=6,
    )
)
def test_the_stream_holds_every_reading_tagged_with_its_batch(
    spec: list[tuple[str, list[Reading]]],
) -> None:
    batches = [Batch(gw, n, tuple(readings)) for n, (gw, readings) in enumerate(spec)]
    columnar = [as_columnar(b) for b in batches]
    assert all(c is not None for c in columnar)
    stream = b"".join(bytes(chunk) for chunk in copy_chunks(columnar))  # type: ignore[arg-type]
    expected = Counter(
        (r.ts_us, r.device_id, r.metric, float(r.value), r.unit, r.seq, b.gateway_id, b.batch_seq)
        for b in batches
        for r in b.readings
    )
    assert Counter(_parse(stream)) == expected
