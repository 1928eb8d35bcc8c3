"""Append-only, hash-chained audit log: each entry's SHA-256 covers its content and its predecessor.

Changing, removing or reordering any row breaks the chain at a place ``verify`` names.
Truncating the tail is only detectable against a remembered head hash (``expected_head``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
DOC_DIGEST_KEY = "doc_sha256"  # in a row's data: the hash of the record as that write left it


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row; ``hash`` = SHA-256(canonical JSON of every other field)."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    data: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """The hashed content: everything but the hash itself."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "data": dict(self.data),
            "prev_hash": self.prev_hash,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    """One break in the chain: which row and what is wrong with it."""

    index: int
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of ``verify``; ``ok`` only when there are no problems."""

    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """True when the log is intact."""
        return not self.problems


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def entry_hash(entry: AuditEntry) -> str:
    """The hash ``entry`` must carry."""
    return hashlib.sha256(canonical_json(entry.body())).hexdigest()


def append(
    head: AuditEntry | None,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry that follows ``head`` (None for the first entry of a log)."""
    if at.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    at = at.astimezone(UTC)
    entry = AuditEntry(
        seq=1 if head is None else head.seq + 1,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        # Round-trip through JSON now so the stored row hashes exactly as it was hashed here.
        data=json.loads(canonical_json(dict(data or {}))),
        prev_hash=GENESIS if head is None else head.hash,
    )
    return AuditEntry(**{**entry.body(), "at": at, "hash": entry_hash(entry)})


def verify(entries: Sequence[AuditEntry], expected_head: str | None = None) -> Verification:
    """Check every hash and link; report each tampered, missing or misplaced row."""
    problems: list[Problem] = []
    by_hash = {e.hash: e for e in entries}
    present = {e.seq for e in entries}
    for i, entry in enumerate(entries):
        if entry_hash(entry) != entry.hash:
            problems.append(Problem(i, entry.seq, "content altered: hash does not match the row"))
        reason = _link_problem(entries[i - 1] if i else None, entry, by_hash, present)
        if reason:
            problems.append(Problem(i, entry.seq, reason))
    if expected_head is not None:
        head = entries[-1].hash if entries else GENESIS
        if head != expected_head:
            last = entries[-1].seq if entries else 0
            problems.append(Problem(len(entries), last, "log truncated or head replaced"))
    return Verification(tuple(problems))


def _link_problem(
    before: AuditEntry | None,
    entry: AuditEntry,
    by_hash: Mapping[str, AuditEntry],
    present: set[int],
) -> str | None:
    """Why ``entry`` does not correctly follow ``before``, or None."""
    expected_prev = GENESIS if before is None else before.hash
    expected_seq = 1 if before is None else before.seq + 1
    if entry.prev_hash == expected_prev:
        return (
            None
            if entry.seq == expected_seq
            else f"sequence number altered (expected {expected_seq})"
        )
    if entry.prev_hash in by_hash:
        where = "at the start" if before is None else f"after row {before.seq}"
        return f"out of order: belongs after row {by_hash[entry.prev_hash].seq}, found {where}"
    gone = range(expected_seq, entry.seq)
    if gone and not any(seq in present for seq in gone):
        return f"rows {gone.start}..{gone.stop - 1} removed before this row"
    if before is None:
        return "first row does not start the chain"
    return f"chain broken: row {before.seq} was altered or replaced"


def to_row(entry: AuditEntry) -> tuple[int, str, str, str, str, str, str, str]:
    """The stored form of an entry: ``at`` and ``data`` as the exact text that was hashed."""
    return (
        entry.seq,
        entry.at.isoformat(),
        entry.actor,
        entry.action,
        entry.subject,
        json.dumps(dict(entry.data)),
        entry.prev_hash,
        entry.hash,
    )


def from_row(row: Sequence[Any]) -> AuditEntry:
    """An entry back from its stored form."""
    seq, at, actor, action, subject, data, prev_hash, digest = row
    return AuditEntry(
        int(seq),
        datetime.fromisoformat(at),
        actor,
        action,
        subject,
        json.loads(data),
        prev_hash,
        digest,
    )


AuditSigner = Callable[[AuditEntry], str]


def document_digest(doc: Mapping[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON: what its audit row says it was left as."""
    return hashlib.sha256(canonical_json(dict(doc))).hexdigest()


def verify_documents(
    documents: Iterable[tuple[str, Mapping[str, Any]]], entries: Sequence[AuditEntry]
) -> list[Problem]:
    """Problems with stored records ``(id, doc)`` whose content no audited write produced."""
    last: dict[str, tuple[int, AuditEntry]] = {}
    for index, entry in enumerate(entries):
        if DOC_DIGEST_KEY in entry.data:
            last[entry.subject] = (index, entry)
    problems: list[Problem] = []
    for record_id, doc in documents:
        if record_id not in last:
            problems.append(Problem(len(entries), 0, f"{record_id}: no audited write made it"))
            continue
        index, entry = last[record_id]
        if entry.data[DOC_DIGEST_KEY] != document_digest(doc):
            problems.append(
                Problem(index, entry.seq, f"{record_id}: changed outside the audited paths")
            )
    return problems


def parse_rows(rows: Iterable[Sequence[Any]]) -> tuple[list[AuditEntry], list[Problem]]:
    """Entries from stored rows; a row that cannot even be read is a problem, not a crash."""
    entries: list[AuditEntry] = []
    problems: list[Problem] = []
    for index, row in enumerate(rows):
        try:
            entries.append(from_row(row))
        except (ValueError, TypeError, KeyError) as exc:
            seq = row[0] if row and isinstance(row[0], int) else -1
            problems.append(Problem(index, seq, f"row unreadable ({type(exc).__name__}: {exc})"))
    return entries, problems
