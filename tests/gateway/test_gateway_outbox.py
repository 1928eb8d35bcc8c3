"""The outbox on a real SQLite file: batch identity, acks, restarts, the bound."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract import Batch, Reading
from gateway.outbox import Outbox

T0_US = 1_767_225_600_000_000


def readings(start: int, count: int) -> list[Reading]:
    """``count`` distinct readings whose seq (and value) number them from ``start``."""
    return [
        Reading("patch-0001", "wound_temp", 30.0 + (i % 100) / 10, "degC", T0_US + i, i)
        for i in range(start, start + count)
    ]


def seqs(batch: Batch) -> list[int]:
    """The reading seqs a batch carries, in order."""
    return [r.seq for r in batch.readings]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A fresh outbox file."""
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    """An outbox on that file, closed after the test."""
    box = Outbox(path, "gw-test")
    yield box
    box.close()


def test_append_cut_ack_roundtrip(outbox: Outbox) -> None:
    outbox.append(readings(0, 5))
    batch = outbox.next_batch(3)
    assert batch is not None
    assert (batch.gateway_id, batch.batch_seq, seqs(batch)) == ("gw-test", 1, [0, 1, 2])
    rest = outbox.next_batch(3)
    assert rest is not None and (rest.batch_seq, seqs(rest)) == (2, [3, 4])
    assert outbox.next_batch(3) is None
    assert outbox.stats().open_batches == 2
    assert outbox.acknowledge(1) == 3
    assert outbox.acknowledge(1) == 0  # a repeated PUBACK changes nothing
    assert outbox.acknowledge(2) == 2
    stats = outbox.stats()
    assert (stats.pending_readings, stats.open_batches, stats.dropped_readings) == (0, 0, 0)


def test_out_of_order_acks_never_reuse_seq_or_ids(outbox: Outbox) -> None:
    outbox.append(readings(0, 9))
    cut = [outbox.next_batch(3) for _ in range(3)]
    assert [b.batch_seq for b in cut if b] == [1, 2, 3]
    # The newest batch is acknowledged first: its seq and ids must not come back.
    outbox.acknowledge(3)
    outbox.append(readings(9, 3))
    fresh = outbox.next_batch(10)
    assert fresh is not None and (fresh.batch_seq, seqs(fresh)) == (4, [9, 10, 11])
    outbox.acknowledge(1)
    assert [b.batch_seq for b in outbox.open_batches()] == [2, 4]
    assert [seqs(b) for b in outbox.open_batches()] == [[3, 4, 5], [9, 10, 11]]


def test_reopen_resends_open_batches_identically(path: Path) -> None:
    first = Outbox(path, "gw-test")
    first.append(readings(0, 10))
    cut = [first.next_batch(4), first.next_batch(4)]
    first.acknowledge(1)
    first.close()  # as after a crash: nothing but the file survives

    again = Outbox(path, "gw-test")
    try:
        assert again.open_batches() == [b for b in cut[1:] if b]
        assert again.stats().pending_readings == 6
        tail = again.next_batch(100)
        assert tail is not None and (tail.batch_seq, seqs(tail)) == (3, [8, 9])
    finally:
        again.close()


def test_readings_after_full_drain_get_new_ids(path: Path, outbox: Outbox) -> None:
    outbox.append(readings(0, 4))
    batch = outbox.next_batch(10)
    assert batch is not None
    outbox.acknowledge(batch.batch_seq)
    assert outbox.stats().pending_readings == 0
    # Table empty: plain rowids would restart at 1, below the batched watermark, and be lost.
    outbox.append(readings(4, 2))
    nxt = outbox.next_batch(10)
    assert nxt is not None and (nxt.batch_seq, seqs(nxt)) == (2, [4, 5])
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT id FROM pending ORDER BY id")] == [5, 6]


def test_bound_drops_oldest_and_counts_durably(path: Path) -> None:
    box = Outbox(path, "gw-test", max_readings=10)
    assert box.append(readings(0, 8)) == 0
    assert box.append(readings(8, 5)) == 3
    box.close()
    box = Outbox(path, "gw-test", max_readings=10)
    try:
        stats = box.stats()
        assert (stats.pending_readings, stats.dropped_readings) == (10, 3)
        batch = box.next_batch(100)
        assert batch is not None and seqs(batch) == list(range(3, 13))
    finally:
        box.close()


def test_bound_drops_a_straddled_open_batch_whole(outbox: Outbox) -> None:
    # Choice under test: an open batch that would lose some readings is dropped whole, because
    # its batch_seq may already be at ingest and must never come back with other content.
    outbox.max_readings = 10
    outbox.append(readings(0, 6))
    straddled = outbox.next_batch(4)  # ids 1-4
    untouched = outbox.next_batch(2)  # ids 5-6
    assert straddled is not None and untouched is not None
    dropped = outbox.append(readings(6, 6))  # 12 > 10: two must go, which cuts into batch 1
    assert dropped == 4
    assert outbox.open_batches() == [untouched]
    assert outbox.acknowledge(straddled.batch_seq) == 0  # its late PUBACK is harmless
    stats = outbox.stats()
    assert (stats.pending_readings, stats.dropped_readings) == (8, 4)
    nxt = outbox.next_batch(100)
    assert nxt is not None and (nxt.batch_seq, seqs(nxt)) == (3, list(range(6, 12)))


def test_max_bytes_lowers_the_bound(outbox: Outbox) -> None:
    outbox.max_bytes = 64 * 1024
    total_dropped = sum(outbox.append(readings(i * 500, 500)) for i in range(20))
    stats = outbox.stats()
    assert total_dropped > 0 and stats.dropped_readings == total_dropped
    assert stats.pending_readings == 10_000 - total_dropped
    assert stats.bound_readings < outbox.max_readings
    batch = outbox.next_batch(100_000)
    assert batch is not None and seqs(batch) == list(range(total_dropped, 10_000))


def test_dead_letters_are_kept(outbox: Outbox) -> None:
    outbox.dead_letter(1, "patch-9", "bad value", b"raw")
    assert outbox.dead_letters() == [("patch-9", "bad value", b"raw")]
