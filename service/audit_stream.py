"""The audit chain verified as a stream: constant memory, and incrementally from a checkpoint.

``verify_store`` reads the log in chunks of ``CHUNK`` rows (keyset pages on seq, so each is one
index range and no transaction stays open) and keeps only the previous row, reporting exactly
what ``audit.parse_rows``, ``audit.verify``, ``audit.verify_documents`` and
``checkpoint.against_checkpoint`` report over the whole log held in memory. The one thing a
break needs from outside the previous row — which row a stray ``prev_hash`` belongs to — is
asked of the store, only when a link is broken.

With ``since`` (a signed checkpoint) only the rows after it are read: the checkpoint's row must
still carry the signed head, every later row must chain from it and be signed, and every
ticket written after it must match its audited digest. A row before the checkpoint altered
without re-hashing leaves the head intact and is found by a full verification only, so run
one now and then; incremental runs are for the frequent checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service import audit
from service.audit import DOC_DIGEST_KEY, GENESIS, AuditEntry, Problem
from service.checkpoint import Checkpoint, row_signed
from service.last_writes import LastWrites
from service.store import ServiceStore
from service.store.queries import EVERY_TICKET, TicketQuery

# Rows per read and tickets per page: small enough that what is in flight stays a few MB
# (5,000 rows and 1,000 ticket documents cost ~20 MB of peak RSS), large enough that the
# round trips do not show (a 545k-row log is ~550 reads).
CHUNK = 1_000
TICKET_PAGE = 200


@dataclass
class Verified:
    """What ``verify_store`` found: problems (in the order the in-memory checks give them),
    how many rows and tickets it checked, and the head it ended on."""

    problems: list[Problem]
    rows: int
    tickets: int
    head: str | None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


@dataclass
class _Chain:
    """``audit.verify``'s checks, one entry at a time, remembering only the previous one."""

    locate: Callable[[str], int | None]
    prev: tuple[int, str] | None = None  # (seq, hash) of the previous entry
    problems: list[Problem] = field(default_factory=list)

    def feed(self, index: int, entry: AuditEntry) -> None:
        """Check ``entry``, the ``index``-th entry read."""
        if audit.entry_hash(entry) != entry.hash:
            self.problems.append(
                Problem(index, entry.seq, "content altered: hash does not match the row")
            )
        reason = self._link(entry)
        if reason:
            self.problems.append(Problem(index, entry.seq, reason))
        self.prev = (entry.seq, entry.hash)

    def _link(self, entry: AuditEntry) -> str | None:
        """Why ``entry`` does not follow the previous entry, or None (as ``audit.verify``)."""
        before = self.prev
        expected_prev = GENESIS if before is None else before[1]
        expected_seq = 1 if before is None else before[0] + 1
        if entry.prev_hash == expected_prev:
            if entry.seq == expected_seq:
                return None
            return f"sequence number altered (expected {expected_seq})"
        owner = self.locate(entry.prev_hash)
        if owner is not None:
            where = "at the start" if before is None else f"after row {before[0]}"
            return f"out of order: belongs after row {owner}, found {where}"
        # Rows come in seq order, so no row read lies between the previous one and this one.
        if entry.seq > expected_seq:
            return f"rows {expected_seq}..{entry.seq - 1} removed before this row"
        if before is None:
            return "first row does not start the chain"
        return f"chain broken: row {before[0]} was altered or replaced"


@dataclass
class _Checkpoints:
    """``against_checkpoint`` for several checkpoints at once, one entry at a time."""

    checkpoints: Sequence[Checkpoint]
    public: Ed25519PublicKey | None
    present: set[int] = field(default_factory=set)  # checkpoint rows found
    rewritten: dict[int, Problem] = field(default_factory=dict)
    unsigned: list[Problem] = field(default_factory=list)

    @property
    def lowest(self) -> int | None:
        """The seq of the earliest checkpoint: rows after it must be signed."""
        return min((cp.seq for cp in self.checkpoints), default=None)

    def feed(self, index: int, entry: AuditEntry, signature: str | None) -> None:
        """Check ``entry`` (with its stored signature) against every checkpoint."""
        for cp in self.checkpoints:
            if entry.seq == cp.seq:
                self.present.add(cp.seq)
                if entry.hash != cp.head:
                    self.rewritten[cp.seq] = Problem(
                        index, entry.seq, "rewritten: row differs from the signed checkpoint"
                    )
        lowest = self.lowest
        if (
            lowest is not None
            and entry.seq > lowest
            and self.public is not None
            and not row_signed(self.public, entry, signature)
        ):
            self.unsigned.append(
                Problem(index, entry.seq, "appended without the audit signing key")
            )

    def problems(self, entries: int, last: int) -> list[Problem]:
        """Every checkpoint's problems in checkpoint order, each (seq, reason) once."""
        seen: dict[tuple[int, str], Problem] = {}
        for cp in self.checkpoints:
            mine: list[Problem] = []
            if cp.seq not in self.present:
                reason = f"log truncated: row {cp.seq} of the checkpoint is missing"
                mine.append(Problem(entries, last, reason))
            elif cp.seq in self.rewritten:
                mine.append(self.rewritten[cp.seq])
            mine += [p for p in self.unsigned if p.seq > cp.seq]
            for problem in mine:
                seen.setdefault((problem.seq, problem.reason), problem)
        return list(seen.values())


def _locator(store: ServiceStore) -> Callable[[str], int | None]:
    """Which readable row carries a hash (``audit.verify`` looks among the rows it could read)."""

    def locate(digest: str) -> int | None:
        seq = store.audit_seq_of(digest)
        if seq is None:
            return None
        entries, _ = audit.parse_rows(store.audit_rows_after(seq - 1, 1))
        return seq if entries and entries[0].hash == digest else None

    return locate


def stream_rows(store: ServiceStore, after_seq: int = 0, chunk: int = CHUNK) -> Iterator[Any]:
    """Every audit row as stored with a seq above ``after_seq``, in seq order, chunk by chunk."""
    while rows := store.audit_rows_after(after_seq, chunk):
        yield from rows
        after_seq = int(rows[-1][0])


@dataclass
class _Run:
    """One pass over the rows: the chain, the checkpoints and the last audited write of each
    record, fed entry by entry."""

    store: ServiceStore
    chain: _Chain
    marks: _Checkpoints
    chunk: int
    index: int = 0  # entries read (from the checkpoint's row on, incrementally)
    last_seq: int = 0
    head: str | None = None
    unreadable: list[Problem] = field(default_factory=list)
    last_write: LastWrites = field(default_factory=LastWrites)
    documents: bool = True  # whether tickets are compared afterwards (else no write is kept)
    signatures: dict[int, str] = field(default_factory=dict)
    signed_until: int = -1

    def row(self, row_index: int, row: Any, *, link: bool = True) -> None:
        """Read one stored row: parse it, then check it (``link``: against the previous one)."""
        entries, bad = audit.parse_rows([row])
        self.unreadable += [Problem(row_index, p.seq, p.reason) for p in bad]
        for entry in entries:
            self._signatures_for(entry.seq)
            if link:
                self.chain.feed(self.index, entry)
            elif audit.entry_hash(entry) != entry.hash:
                self.chain.problems.append(
                    Problem(self.index, entry.seq, "content altered: hash does not match the row")
                )
            self.marks.feed(self.index, entry, self.signatures.get(entry.seq))
            if self.documents and DOC_DIGEST_KEY in entry.data:
                digest = str(entry.data[DOC_DIGEST_KEY])
                self.last_write.put(entry.subject, self.index, entry.seq, digest)
            self.index, self.last_seq = self.index + 1, entry.seq
            self.head = entry.hash if link else self.head

    def _signatures_for(self, seq: int) -> None:
        """Have the signatures of the chunk holding ``seq`` at hand, when any are checked."""
        lowest = self.marks.lowest
        if lowest is None or seq <= lowest or seq <= self.signed_until:
            return
        self.signed_until = seq - 1 + self.chunk
        self.signatures = self.store.audit_signatures(seq - 1, self.signed_until)


def verify_store(
    store: ServiceStore,
    *,
    expected_head: str | None = None,
    checkpoints: Sequence[Checkpoint] = (),
    public: Ed25519PublicKey | None = None,
    since: Checkpoint | None = None,
    documents: bool = True,
    chunk: int = CHUNK,
) -> Verified:
    """Verify the store's audit chain (and, with ``documents``, every ticket against it).

    With ``since``, only the rows from that checkpoint's on are read (pass it in
    ``checkpoints`` too, to have its row and the signatures after it checked).
    """
    start = 0 if since is None else since.seq
    run = _Run(
        store,
        _Chain(_locator(store), None if since is None else (since.seq, since.head)),
        _Checkpoints(checkpoints, public),
        chunk,
        index=start,
        last_seq=start,
        head=None if since is None else since.head,
        documents=documents,
    )
    if since is not None:
        for row in store.audit_rows_after(since.seq - 1, 1):
            if row[0] == since.seq:
                run.index -= 1  # the checkpoint's row keeps its place
                run.row(run.index, row, link=False)
    for row_index, row in enumerate(stream_rows(store, start, chunk), start):
        run.row(row_index, row)
    problems = run.unreadable + run.chain.problems
    if expected_head is not None and (run.head or GENESIS) != expected_head:
        problems.append(Problem(run.index, run.last_seq, "log truncated or head replaced"))
    checked = 0
    if documents:
        only = sorted(run.last_write) if since is not None else None
        checked, found = _documents(store, run.last_write, run.index, only)
        problems += found
    problems += run.marks.problems(run.index, run.last_seq)
    return Verified(problems, run.index - start, checked, run.head)


def _documents(
    store: ServiceStore,
    last_write: LastWrites,
    entries: int,
    only: Sequence[str] | None,
) -> tuple[int, list[Problem]]:
    """``audit.verify_documents`` over the stored tickets (or ``only`` these), page by page."""
    problems: list[Problem] = []
    checked = 0
    for ticket_id, doc in _ticket_docs(store, only):
        checked += 1
        written = last_write.get(ticket_id)
        if written is None:
            problems.append(Problem(entries, 0, f"{ticket_id}: no audited write made it"))
            continue
        index, seq, digest = written
        if digest != audit.document_digest(doc):
            problems.append(Problem(index, seq, f"{ticket_id}: changed outside the audited paths"))
    return checked, problems


def _ticket_docs(
    store: ServiceStore, only: Sequence[str] | None, page: int = TICKET_PAGE
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, JSON document) of every stored ticket by id (or of the ids ``only``), page by page."""
    if only is not None:
        for first in range(0, len(only), page):
            ids = tuple(only[first : first + page])
            query = TicketQuery(scope=EVERY_TICKET, ids=ids, limit=None)
            for ticket, _ in store.ticket_page(query):
                yield ticket.id, ticket.model_dump(mode="json")
        return
    after = None
    while found := store.ticket_page(TicketQuery(scope=EVERY_TICKET, after=after, limit=page)):
        for ticket, _ in found:
            yield ticket.id, ticket.model_dump(mode="json")
        after = found[-1][1]
