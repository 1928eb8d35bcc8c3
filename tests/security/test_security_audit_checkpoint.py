"""Signed checkpoints and row signatures detect truncation, forged appends and rewrites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service import audit
from service.audit import AuditEntry
from service.checkpoint import (
    CheckpointError,
    against_checkpoint,
    generate_key,
    load_key,
    load_public,
    parse_checkpoint,
    row_signature,
    sign_checkpoint,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def chain(n: int, start: AuditEntry | None = None) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    head = start
    for i in range(n):
        head = audit.append(
            head, T0 + timedelta(minutes=i), "api:e1", "ticket.accepted", f"T-{i}", {"i": i}
        )
        entries.append(head)
    return entries


def rehash_from(entries: list[AuditEntry], index: int, data: dict[str, int]) -> list[AuditEntry]:
    """An attacker's rewrite: change one row and recompute every hash after it."""
    out = entries[:index]
    head = out[-1] if out else None
    for i, e in enumerate(entries[index:]):
        head = audit.append(head, e.at, e.actor, e.action, e.subject, data if i == 0 else e.data)
        out.append(head)
    return out


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    generate_key(path)
    return path


def test_checkpoint_round_trip_and_forgery(key_path: Path, tmp_path: Path) -> None:
    key = load_key(key_path)
    entries = chain(5)
    cp = sign_checkpoint(key, entries[-1], T0)
    assert parse_checkpoint(cp.to_json(), key.public_key()) == cp
    forged = cp.to_json().replace(cp.head, "0" * 64)
    with pytest.raises(CheckpointError, match="signature"):
        parse_checkpoint(forged, key.public_key())
    other = tmp_path / "other.key"
    generate_key(other)
    with pytest.raises(CheckpointError, match="signature"):
        parse_checkpoint(cp.to_json(), load_public(other))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        parse_checkpoint("{}", key.public_key())


def test_a_world_readable_key_is_refused(key_path: Path) -> None:
    key_path.chmod(0o644)
    with pytest.raises(CheckpointError, match="readable by others"):
        load_key(key_path)


def test_truncation_forged_append_and_rehash_rewrite_are_detected(key_path: Path) -> None:
    key = load_key(key_path)
    public = key.public_key()
    entries = chain(10)
    sigs = {e.seq: row_signature(key, e) for e in entries}
    cp = sign_checkpoint(key, entries[6], T0)  # rows 8..10 came after the checkpoint
    assert against_checkpoint(entries, cp, public, sigs) == []
    assert audit.verify(entries).ok

    truncated = entries[:5]
    assert audit.verify(truncated).ok  # the chain alone cannot tell
    assert "truncated" in against_checkpoint(truncated, cp, public, sigs)[0].reason

    forged = [*entries, audit.append(entries[-1], T0, "api:x", "ticket.closed", "T-x", {})]
    assert audit.verify(forged).ok
    problems = against_checkpoint(forged, cp, public, sigs)
    assert [(p.seq, p.reason) for p in problems] == [(11, "appended without the audit signing key")]

    rewritten = rehash_from(entries, 2, {"i": 999})
    assert audit.verify(rewritten).ok
    reasons = {p.reason for p in against_checkpoint(rewritten, cp, public, sigs)}
    assert "rewritten: row differs from the signed checkpoint" in reasons

    # A rewrite after the checkpoint loses the rows' signatures.
    late = rehash_from(entries, 8, {"i": -1})
    assert {p.seq for p in against_checkpoint(late, cp, public, sigs)} == {9, 10}
