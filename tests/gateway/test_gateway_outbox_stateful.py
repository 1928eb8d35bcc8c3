"""Random append/cut/publish/confirm/reopen sequences against the outbox's invariants."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contract import Batch, Reading
from gateway import outbox as outbox_module
from gateway.outbox import Outbox

T0_US = 1_767_225_600_000_000
BOUND = 12
CHUNK = 4  # readings per stored chunk: appends split, small ones join, batches span chunks
SERIES = (("exudate", "%"), ("wound_temp", "degC"))


def reading(i: int) -> Reading:
    """Reading number ``i`` (its seq): devices and series vary, so chunks' tables differ."""
    metric, unit = SERIES[i % 2]
    return Reading(f"patch-{i % 3}", metric, float(i % 100), unit, T0_US + i, i)


class OutboxMachine(RuleBasedStateMachine):
    """Every appended reading is confirmed exactly once, still pending, or counted as dropped.

    ``acked`` holds readings that left through ``confirm`` or ``acknowledge`` (the PUBACK mode):
    both remove a batch; ``publish`` only marks it, and the mark must survive a reopen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-outbox-"))
        self.path = self.dir / "outbox.db"
        self.chunk_sizes = (outbox_module.CHUNK_MAX, outbox_module.GROW_MAX)
        outbox_module.CHUNK_MAX = outbox_module.GROW_MAX = CHUNK
        self.outbox = Outbox(self.path, "gw-prop", max_readings=BOUND)
        self.appended = 0  # reading seqs are 0 .. appended-1, one per appended reading
        self.acked: list[int] = []  # seqs of readings in acknowledged batches, with repeats
        self.cut: dict[int, Batch] = {}  # every batch ever cut, by batch_seq
        self.unacked: list[int] = []  # batch_seqs cut and not yet acknowledged by us
        self.published: dict[int, int] = {}  # batch_seq → first published_at_us we set
        self.last_seq = 0
        self.clock_us = 0

    def teardown(self) -> None:
        """Close and remove the file."""
        outbox_module.CHUNK_MAX, outbox_module.GROW_MAX = self.chunk_sizes
        self.outbox.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(n=st.integers(min_value=1, max_value=8))
    def append(self, n: int) -> None:
        """A source delivers n readings."""
        batch = [reading(i) for i in range(self.appended, self.appended + n)]
        self.appended += n
        dropped = self.outbox.append(batch)
        assert dropped >= 0

    @rule(limit=st.integers(min_value=1, max_value=10))
    def cut_batch(self, limit: int) -> None:
        """The uplink cuts a batch."""
        batch = self.outbox.next_batch(limit)
        if batch is None:
            return
        assert batch.batch_seq > self.last_seq, "batch_seq must strictly increase"
        assert batch.batch_seq not in self.cut, "batch_seq reused"
        assert 1 <= len(batch.readings) <= limit
        self.last_seq = batch.batch_seq
        self.cut[batch.batch_seq] = batch
        self.unacked.append(batch.batch_seq)

    @precondition(lambda self: bool(self.unacked))
    @rule(pick=st.integers(min_value=0, max_value=1_000))
    def ack(self, pick: int) -> None:
        """A PUBACK arrives for any open batch, in any order."""
        seq = self.unacked.pop(pick % len(self.unacked))
        removed = self.outbox.acknowledge(seq)
        batch = self.cut[seq]
        # Zero means the bound dropped the batch whole; otherwise all of it left, once.
        assert removed in (0, len(batch.readings))
        if removed:
            self.acked.extend(r.seq for r in batch.readings)

    @precondition(lambda self: bool(self.unacked))
    @rule(pick=st.integers(min_value=0, max_value=1_000))
    def publish(self, pick: int) -> None:
        """A PUBACK in confirm mode: the batch stays, marked with the first PUBACK's time."""
        seq = self.unacked[pick % len(self.unacked)]
        still_open = self.outbox.batch(seq) is not None
        self.clock_us += 1
        assert self.outbox.mark_published(seq, self.clock_us) is still_open
        if still_open:
            self.published.setdefault(seq, self.clock_us)

    @rule(
        picks=st.lists(st.integers(min_value=0, max_value=1_000), max_size=4),
        strays=st.lists(st.integers(min_value=0, max_value=80), max_size=3),
    )
    def confirm(self, picks: list[int], strays: list[int]) -> None:
        """Ingest confirms some open batches, in any order, plus unknown or old seqs."""
        chosen = {self.unacked[p % len(self.unacked)] for p in picks} if self.unacked else set()
        stray = {s for s in strays if s not in self.unacked}
        in_outbox = [seq for seq in chosen if self.outbox.batch(seq) is not None]
        removed = self.outbox.confirm([*chosen, *stray, *chosen])  # repeats within one message
        assert removed == sum(len(self.cut[seq].readings) for seq in in_outbox)
        for seq in chosen:
            self.unacked.remove(seq)
        for seq in in_outbox:
            self.acked.extend(r.seq for r in self.cut[seq].readings)

    @rule(seq=st.integers(min_value=0, max_value=60))
    def stray_ack(self, seq: int) -> None:
        """A repeated or unknown PUBACK never removes anything new."""
        if seq in self.unacked:
            return
        assert self.outbox.acknowledge(seq) == 0

    @rule()
    def drain(self) -> None:
        """The uplink catches up: cut and acknowledge everything; nothing may be stranded."""
        while self.outbox.next_batch(7) is not None:
            pass
        for batch in self.outbox.open_batches():
            self.cut[batch.batch_seq] = batch
            if batch.batch_seq not in self.unacked:
                self.unacked.append(batch.batch_seq)
            self.last_seq = max(self.last_seq, batch.batch_seq)
        while self.unacked:
            self.ack(0)
        assert self.outbox.stats().pending_readings == 0
        assert self._pending_seqs() == []
        assert self.outbox.oldest_pending_us() is None
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            assert db.execute("SELECT count(*) FROM chunks").fetchone() == (0,), "left behind"

    @rule()
    def reopen(self) -> None:
        """The process dies and restarts on the same file: open batches come back as cut."""
        before = self.outbox.stats()
        self.outbox.close()
        self.outbox = Outbox(self.path, "gw-prop", max_readings=BOUND)
        for batch in self.outbox.open_batches():
            assert batch == self.cut[batch.batch_seq]
        after = self.outbox.stats()
        assert (after.pending_readings, after.open_batches, after.dropped_readings) == (
            before.pending_readings,
            before.open_batches,
            before.dropped_readings,
        )

    def _pending_seqs(self) -> list[int]:
        return [r.seq for r in self.outbox.pending()]

    @invariant()
    def every_reading_accounted_for_once(self) -> None:
        """acked + pending + dropped == appended, with no reading in two places."""
        pending = self._pending_seqs()
        stats = self.outbox.stats()
        oldest = self.outbox.oldest_pending_us()
        assert oldest == (reading(pending[0]).ts_us if pending else None)
        assert len(self.acked) == len(set(self.acked)), "a reading was acked twice"
        assert not set(self.acked) & set(pending)
        assert stats.pending_readings == len(pending) <= BOUND
        assert len(self.acked) + len(pending) + stats.dropped_readings == self.appended
        dropped = set(range(self.appended)) - set(self.acked) - set(pending)
        assert len(dropped) == stats.dropped_readings
        # The bound only ever takes the oldest readings still in the outbox.
        if dropped and pending:
            assert max(dropped) < min(pending)

    @invariant()
    def open_batches_are_as_cut(self) -> None:
        """Every open batch is exactly a batch we cut and have not acknowledged."""
        for batch in self.outbox.open_batches():
            assert batch.batch_seq in self.unacked
            assert batch == self.cut[batch.batch_seq]

    @invariant()
    def published_marks_are_kept(self) -> None:
        """Open batches carry the first PUBACK time we gave them (or none); counts agree."""
        states = self.outbox.open_batch_states()
        for state in states:
            assert state.published_at_us == self.published.get(state.batch_seq)
        stats = self.outbox.stats()
        assert self.outbox.open_batch_count() == stats.open_batches == len(states)
        assert stats.published_batches == sum(s.published_at_us is not None for s in states)


OutboxMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOutboxMachine = OutboxMachine.TestCase
