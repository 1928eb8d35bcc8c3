"""The outbox on a real SQLite file: batch identity, publish/confirm states, restarts, the bound."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Batch, Reading, encode_batch
from gateway import outbox as outbox_module
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
        assert db.execute("SELECT first_id, last_id FROM chunks").fetchall() == [(5, 6)]


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


def test_published_batch_stays_until_confirmed_and_survives_reopen(path: Path) -> None:
    first = Outbox(path, "gw-test")
    first.append(readings(0, 6))
    one, two = first.next_batch(3), first.next_batch(3)
    assert one is not None and two is not None
    assert first.mark_published(1, 111) is True
    assert first.mark_published(1, 999) is True  # a resend's PUBACK keeps the first time
    stats = first.stats()
    # Acknowledged by the broker is not delivered: its readings still count as pending.
    assert (stats.pending_readings, stats.open_batches, stats.published_batches) == (6, 2, 1)
    first.close()  # as after a crash

    again = Outbox(path, "gw-test")
    try:
        states = again.open_batch_states()
        assert [(s.batch_seq, s.published_at_us) for s in states] == [(1, 111), (2, None)]
        assert again.batch(1) == one and again.batch(2) == two
        assert again.open_batch_count() == 2
        assert again.confirm([1]) == 3
        assert again.batch(1) is None
        assert again.mark_published(1, 222) is False  # a late PUBACK after the confirmation
        assert [s.batch_seq for s in again.open_batch_states()] == [2]
        stats = again.stats()
        assert (stats.pending_readings, stats.open_batches, stats.published_batches) == (3, 1, 0)
    finally:
        again.close()


def test_unknown_or_repeated_confirmations_are_harmless(outbox: Outbox) -> None:
    outbox.append(readings(0, 9))
    cut = [outbox.next_batch(3) for _ in range(3)]
    assert all(cut)
    assert outbox.confirm([]) == 0
    assert outbox.confirm([0, 4, 17, 2**40]) == 0  # never cut
    assert outbox.stats().pending_readings == 9
    # Several at once, out of order, one of them twice: each batch leaves once.
    assert outbox.confirm([3, 1, 3]) == 6
    assert outbox.confirm([1, 3]) == 0  # ingest confirms every copy it gets
    assert [b.batch_seq for b in outbox.open_batches()] == [2]
    assert (outbox.stats().pending_readings, outbox.open_batch_count()) == (3, 1)
    outbox.append(readings(9, 1))
    nxt = outbox.next_batch(10)
    assert nxt is not None and nxt.batch_seq == 4  # confirmed seqs are never reused


def test_bound_drops_published_unconfirmed_batches_and_counts_them(outbox: Outbox) -> None:
    outbox.max_readings = 6
    outbox.append(readings(0, 6))
    batch = outbox.next_batch(3)
    assert batch is not None and outbox.mark_published(batch.batch_seq, 1)
    assert outbox.append(readings(6, 2)) == 3  # unconfirmed is not delivered: it goes, counted
    assert outbox.open_batch_count() == 0
    assert outbox.confirm([batch.batch_seq]) == 0  # its confirmation may still come: harmless
    stats = outbox.stats()
    assert (stats.pending_readings, stats.dropped_readings, stats.open_batches) == (5, 3, 0)


def test_outbox_of_an_older_gateway_is_migrated(path: Path) -> None:
    # The schema before confirmations: batches had no published_at_us column.
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE pending (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
                unit TEXT NOT NULL, ts_us INTEGER NOT NULL, seq INTEGER NOT NULL);
            CREATE TABLE batches (batch_seq INTEGER PRIMARY KEY,
                                  first_id INTEGER NOT NULL, last_id INTEGER NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """)
        db.executemany(
            "INSERT INTO pending (device_id, metric, value, unit, ts_us, seq)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(r.device_id, r.metric, r.value, r.unit, r.ts_us, r.seq) for r in readings(0, 5)],
        )
        db.execute("INSERT INTO batches VALUES (7, 1, 3)")
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("last_batch_seq", 7), ("batched_through", 3)]
        )
    box = Outbox(path, "gw-test")
    try:
        # Its open batch was only PUBACKed, never confirmed: unpublished, so it is resent.
        assert [(s.batch_seq, s.published_at_us) for s in box.open_batch_states()] == [(7, None)]
        open_batch = box.batch(7)
        assert open_batch is not None and seqs(open_batch) == [0, 1, 2]
        assert box.mark_published(7, 5)
        rest = box.next_batch(10)
        assert rest is not None and (rest.batch_seq, seqs(rest)) == (8, [3, 4])
        assert box.confirm([7, 8]) == 5
    finally:
        box.close()
    Outbox(path, "gw-test").close()  # migrating twice is a no-op


def test_batches_cut_from_memory_equal_batches_read_back_from_disk(tmp_path: Path) -> None:
    # The same appends and cuts, once straight through (the in-memory tail) and once with a
    # reopen before every cut (SQLite): the batches, and the bytes a resend would carry, match.
    mixed = [*readings(0, 700), Reading("us-000", "error_code", 3, "code", T0_US, 1)]
    cached, disk = Outbox(tmp_path / "a.db", "gw"), tmp_path / "b.db"
    cuts: list[tuple[Batch | None, Batch | None]] = []
    for chunk in (mixed[:300], mixed[300:301], mixed[301:]):
        cached.append(chunk)
        with_disk = Outbox(disk, "gw")
        with_disk.append(chunk)
        with_disk.close()
        for _ in range(3):
            with_disk = Outbox(disk, "gw")
            cuts.append((cached.next_batch(250), with_disk.next_batch(250)))
            with_disk.close()
    cached.close()
    for from_memory, from_disk in cuts:
        assert from_memory == from_disk
        if from_memory is not None and from_disk is not None:
            assert encode_batch(from_memory) == encode_batch(from_disk)


def test_a_bound_drop_falls_back_to_disk_and_loses_nothing(path: Path) -> None:
    box = Outbox(path, "gw", max_readings=100)
    box.append(readings(0, 80))
    assert box.append(readings(80, 40)) == 20  # the 20 oldest went
    first = box.next_batch(1_000)
    assert first is not None and seqs(first) == list(range(20, 120))
    box.close()


# The schema of the version that kept one row per reading (before chunks).
_ROW_PER_READING_SCHEMA = """
    CREATE TABLE pending (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
        unit TEXT NOT NULL, ts_us INTEGER NOT NULL, seq INTEGER NOT NULL);
    CREATE TABLE batches (batch_seq INTEGER PRIMARY KEY, first_id INTEGER NOT NULL,
                          last_id INTEGER NOT NULL, published_at_us INTEGER);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class RowPerReadingHistory:
    """The end state of an outbox of the row-per-reading version, as its code left it.

    Readings 1..appended (id i holds seq i - 1); batches cut from id 1 on; some confirmed; the
    bound dropped every reading up to ``drop_to``, and whole the open batch straddling it.
    """

    appended: int
    batches: tuple[tuple[int, int], ...]  # (first_id, last_id) of every batch ever cut
    confirmed: tuple[bool, ...]
    drop_to: int

    @property
    def batched_through(self) -> int:
        return self.batches[-1][1] if self.batches else 0

    def cutoff(self) -> int:
        """The old bound's cut: ``drop_to``, extended to the end of a straddled open batch."""
        straddled = [
            last for (first, last), done in self.open_or_not() if not done and first <= self.drop_to
        ]
        return max([self.drop_to, *straddled]) if self.drop_to else 0

    def open_or_not(self) -> list[tuple[tuple[int, int], bool]]:
        return [(ids, done) for ids, done in zip(self.batches, self.confirmed, strict=True)]

    def open_batches(self) -> dict[int, tuple[int, int]]:
        """batch_seq (100 + position) → ids, of the batches neither confirmed nor dropped."""
        cut = self.cutoff()
        return {
            100 + n: (first, last)
            for n, ((first, last), done) in enumerate(self.open_or_not())
            if not done and first > cut
        }

    def unbatched(self) -> list[int]:
        return list(range(max(self.batched_through, self.cutoff()) + 1, self.appended + 1))

    def live(self) -> list[int]:
        in_batches = [
            i for first, last in self.open_batches().values() for i in range(first, last + 1)
        ]
        return sorted(in_batches) + self.unbatched()

    def write(self, path: Path) -> None:
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.executescript(_ROW_PER_READING_SCHEMA)
            db.executemany(
                "INSERT INTO pending (device_id, metric, value, unit, ts_us, seq)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                readings(0, self.appended),
            )
            live = set(self.live())
            db.executemany(
                "DELETE FROM pending WHERE id = ?",
                [(i,) for i in range(1, self.appended + 1) if i not in live],
            )
            db.executemany(
                "INSERT INTO batches VALUES (?, ?, ?, NULL)",
                [(seq, first, last) for seq, (first, last) in self.open_batches().items()],
            )
            confirmed = sum(last - first + 1 for (first, last), done in self.open_or_not() if done)
            dropped = self.appended - len(live) - confirmed
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("batched_through", self.batched_through),
                    ("last_batch_seq", 99 + len(self.batches)),
                    ("dropped", dropped),
                ],
            )


@st.composite
def row_per_reading_histories(draw: st.DrawFn) -> RowPerReadingHistory:
    appended = draw(st.integers(0, 30))
    batches: list[tuple[int, int]] = []
    for size in draw(st.lists(st.integers(1, 6), max_size=8)):
        at = batches[-1][1] if batches else 0
        if at < appended:
            batches.append((at + 1, min(appended, at + size)))
    confirmed = draw(st.lists(st.booleans(), min_size=len(batches), max_size=len(batches)))
    return RowPerReadingHistory(
        appended, tuple(batches), tuple(confirmed), draw(st.integers(0, appended))
    )


@settings(max_examples=60, deadline=None)
@given(row_per_reading_histories())
def test_an_outbox_of_the_row_per_reading_version_keeps_every_reading(
    history: RowPerReadingHistory,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(outbox_module, "CHUNK_MAX", 4)  # long runs of ids split into chunks
        path = Path(tmp) / "outbox.db"
        history.write(path)
        with contextlib.closing(sqlite3.connect(path)) as db:
            dropped_before = db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        box = Outbox(path, "gw-test")
        try:
            assert [r.seq for r in box.pending()] == [i - 1 for i in history.live()]
            stats = box.stats()
            assert (stats.pending_readings, stats.dropped_readings) == (
                len(history.live()),
                dropped_before[0],
            )
            opened = history.open_batches()
            assert [s.batch_seq for s in box.open_batch_states()] == sorted(opened)
            for seq, (first, last) in opened.items():
                batch = box.batch(seq)
                assert batch is not None and seqs(batch) == list(range(first - 1, last))
            box.append(readings(1_000, 2))  # new ids continue above every old one
            fresh = box.next_batch(100)
            expected = [i - 1 for i in history.unbatched()] + [1_000, 1_001]
            assert fresh is not None and (fresh.batch_seq, seqs(fresh)) == (
                100 + len(history.batches),
                expected,
            )
        finally:
            box.close()
        again = Outbox(path, "gw-test")  # migrating twice is a no-op
        try:
            assert again.open_batches()[-1].batch_seq == 100 + len(history.batches)
        finally:
            again.close()


def test_a_migration_that_cannot_pack_a_reading_changes_nothing(path: Path) -> None:
    RowPerReadingHistory(5, ((1, 2),), (False,), 0).write(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE pending SET value = 'not a number' WHERE id = 4")
    with pytest.raises(TypeError):
        Outbox(path, "gw-test")  # the gateway refuses to start rather than lose the reading
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM pending").fetchone() == (5,)
        assert db.execute("SELECT count(*) FROM chunks").fetchone() == (0,)
        with db:
            db.execute("UPDATE pending SET value = 33.0 WHERE id = 4")
    box = Outbox(path, "gw-test")
    try:
        assert [r.seq for r in box.pending()] == [0, 1, 2, 3, 4]
    finally:
        box.close()


def test_a_big_append_is_stored_in_chunks_and_cut_across_them(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "CHUNK_MAX", 100)
    box = Outbox(path, "gw-test", max_readings=1_000)
    try:
        box.append(readings(0, 450))
        with contextlib.closing(sqlite3.connect(path)) as db:
            chunks = db.execute("SELECT first_id, last_id FROM chunks ORDER BY first_id")
            assert chunks.fetchall() == [(1, 100), (101, 200), (201, 300), (301, 400), (401, 450)]
        cut = box.next_batch(150)
        assert cut is not None and seqs(cut) == list(range(150))
        assert box.confirm([cut.batch_seq]) == 150
        assert box.append(readings(450, 800)) == 100  # the oldest 100 go, mid-chunk
        assert box.oldest_pending_us() == T0_US + 250
        with contextlib.closing(sqlite3.connect(path)) as db:
            # The chunk the cut fell in lost its dead head: the byte bound sees the space.
            assert db.execute("SELECT min(first_id) FROM chunks").fetchone() == (251,)
        rest = box.next_batch(10_000)
        assert rest is not None and seqs(rest) == list(range(250, 1_250))
    finally:
        box.close()


def test_small_appends_share_a_chunk_until_a_batch_cuts_into_it(path: Path) -> None:
    box = Outbox(path, "gw-test")
    try:
        for start in range(0, 12, 3):
            box.append(readings(start, 3))
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT first_id, last_id FROM chunks").fetchall() == [(1, 12)]
        cut = box.next_batch(5)
        assert cut is not None
        sent = encode_batch(cut)
        box.append([r._replace(device_id="patch-0002") for r in readings(12, 3)])
        with contextlib.closing(sqlite3.connect(path)) as db:
            # A chunk a batch covers is never rewritten: the new readings start their own.
            chunks = db.execute("SELECT first_id, last_id FROM chunks ORDER BY first_id")
            assert chunks.fetchall() == [(1, 12), (13, 15)]
        resend = box.batch(cut.batch_seq)
        assert resend is not None and encode_batch(resend) == sent
        rest = box.next_batch(100)
        assert rest is not None and seqs(rest) == list(range(5, 15))
    finally:
        box.close()
