"""The streaming audit verification says exactly what the in-memory checks say, chunk by chunk,
and from a checkpoint on it reads only the rows after it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service import audit, desk
from service.audit import Problem
from service.audit_stream import verify_store
from service.checkpoint import Checkpoint, against_checkpoint, row_signature, sign_checkpoint
from service.lifecycle import Accept, Arrive, Resolve
from service.model import Tier
from service.store import ServiceStore, SqliteStore
from tests.service.factories import T0, device, engineer, site

KEY = Ed25519PrivateKey.generate()


def reference(
    store: ServiceStore,
    expected_head: str | None = None,
    checkpoints: Sequence[Checkpoint] = (),
) -> list[Problem]:
    """What `vigil audit verify` reported when it held the whole log in memory."""
    entries, problems = audit.parse_rows(store.audit_rows())
    tickets = [(t.id, t.model_dump(mode="json")) for t in store.tickets()]
    signatures = store.audit_signatures()
    problems += audit.verify(entries, expected_head).problems
    problems += audit.verify_documents(tickets, entries)
    seen: dict[tuple[int, str], Problem] = {}
    for cp in checkpoints:
        for p in against_checkpoint(entries, cp, KEY.public_key(), signatures):
            seen.setdefault((p.seq, p.reason), p)
    return problems + list(seen.values())


def build(path: Path, tickets: int = 6) -> Checkpoint:
    """A signed store with a few tickets walked through their lifecycle; its checkpoint."""
    store = SqliteStore(path)
    store.audit_signer = lambda entry: row_signature(KEY, entry)
    store.put_site(site("s1"))
    store.put_engineer(engineer("e1", capacity=100))
    for n in range(tickets):
        store.put_device(device(f"d{n}"))
        at = T0 + timedelta(hours=n)
        desk.open_ticket(store, f"d{n}", Tier.URGENT, "x", "api:h1", f"T-{n}", at)
        desk.apply(store, f"T-{n}", Accept(), "api:e1", at + timedelta(minutes=5))
        if n % 2:
            desk.apply(store, f"T-{n}", Arrive(), "api:e1", at + timedelta(minutes=30))
            desk.apply(store, f"T-{n}", Resolve("fan", "new"), "api:e1", at + timedelta(hours=1))
    head = store.audit_head()
    assert head is not None
    checkpoint = sign_checkpoint(KEY, head, T0)
    desk.apply(store, "T-0", Arrive(), "api:e1", T0 + timedelta(days=1))  # after it, signed
    store.close()
    return checkpoint


def attack(path: Path, script: str) -> None:
    """Edit the database directly, triggers dropped, as someone with its credentials can."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;"
        "DROP TRIGGER audit_signatures_no_delete;" + script
    )
    conn.commit()
    conn.close()


def forge_append(path: Path) -> None:
    store = SqliteStore(path)
    head = store.audit_head()
    store.close()
    forged = audit.append(head, T0 + timedelta(days=2), "api:e1", "close", "T-1", {})
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", audit.to_row(forged))
    conn.commit()
    conn.close()


ATTACKS: dict[str, Callable[[Path], None]] = {
    "untouched": lambda path: None,
    "content altered": lambda path: attack(path, "UPDATE audit_log SET actor='m' WHERE seq=9;"),
    "rows removed": lambda path: attack(path, "DELETE FROM audit_log WHERE seq IN (10, 11, 12);"),
    "first rows removed": lambda path: attack(path, "DELETE FROM audit_log WHERE seq <= 2;"),
    "rows swapped": lambda path: attack(
        path,
        "UPDATE audit_log SET seq = -1 WHERE seq = 14; UPDATE audit_log SET seq = 14"
        " WHERE seq = 15; UPDATE audit_log SET seq = 15 WHERE seq = -1;",
    ),
    "seq altered": lambda path: attack(path, "UPDATE audit_log SET seq = 99 WHERE seq = 20;"),
    "tail cut": lambda path: attack(path, "DELETE FROM audit_log WHERE seq >= 25;"),
    "row unreadable": lambda path: attack(path, "UPDATE audit_log SET data='{' WHERE seq = 7;"),
    "ticket edited": lambda path: attack(
        path, "UPDATE tickets SET doc = json_set(doc, '$.fault', 'user') WHERE id = 'T-3';"
    ),
    "forged append": forge_append,
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("chunk", [1, 7, 5000])
def test_streaming_says_what_the_whole_log_says(tmp_path: Path, name: str, chunk: int) -> None:
    path = tmp_path / "s.db"
    checkpoint = build(path)
    store = SqliteStore(path)
    head = store.audit_head()
    store.close()
    assert head is not None
    ATTACKS[name](path)
    store = SqliteStore(path)
    expected = reference(store, head.hash, [checkpoint])
    found = verify_store(
        store,
        expected_head=head.hash,
        checkpoints=[checkpoint],
        public=KEY.public_key(),
        chunk=chunk,
    )
    assert found.problems == expected
    assert found.ok == (name == "untouched")
    store.close()


def test_incremental_reads_only_what_follows_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    checkpoint = build(path)
    store = SqliteStore(path)
    ok = verify_store(store, checkpoints=[checkpoint], public=KEY.public_key(), since=checkpoint)
    # One row after it (T-0's arrival); T-0 and the ticket of the checkpoint's own row checked.
    assert ok.ok and (ok.rows, ok.tickets) == (1, 2)
    store.close()
    forge_append(path)
    attack(path, "UPDATE tickets SET doc = json_set(doc, '$.title', 'y') WHERE id = 'T-0';")
    store = SqliteStore(path)
    found = verify_store(store, checkpoints=[checkpoint], public=KEY.public_key(), since=checkpoint)
    reasons = [p.reason for p in found.problems]
    assert reasons == [
        "T-0: changed outside the audited paths",
        "appended without the audit signing key",
    ]
    store.close()


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("UPDATE audit_log SET actor = 'm', hash = 'x' WHERE seq = {seq};", "rewritten"),
        ("DELETE FROM audit_log WHERE seq >= {seq};", "log truncated"),
    ],
)
def test_incremental_checks_the_checkpoint_row(tmp_path: Path, script: str, reason: str) -> None:
    path = tmp_path / "s.db"
    checkpoint = build(path)
    attack(path, script.format(seq=checkpoint.seq))
    store = SqliteStore(path)
    found = verify_store(store, checkpoints=[checkpoint], public=KEY.public_key(), since=checkpoint)
    assert any(p.reason.startswith(reason) for p in found.problems), found.problems
    store.close()
