"""`vigil audit verify --checkpoint` against a store an attacker with database access edited."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service import audit, desk
from service.checkpoint import load_key, row_signature
from service.lifecycle import Accept, Arrive, Resolve, SignOff
from service.model import Tier
from service.store import SqliteStore
from tests.service.factories import T0, device, engineer, site
from vigil.cli import app

runner = CliRunner()


@pytest.fixture
def signed_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A store whose rows are signed, a checkpoint file with one checkpoint, and the key."""
    key_path = tmp_path / "audit.key"
    assert runner.invoke(app, ["audit", "keygen", "--key", str(key_path)]).exit_code == 0
    key = load_key(key_path)
    db = tmp_path / "service.db"
    store = SqliteStore(db)
    store.audit_signer = lambda entry: row_signature(key, entry)
    store.put_site(site("s1"))
    store.put_device(device("d1", site_id="s1"))
    store.put_engineer(engineer("e1"))
    ticket = desk.open_ticket(store, "d1", Tier.URGENT, "no image", "api:h1", "T-1", T0)
    assert ticket.assignee == "e1"
    desk.apply(store, "T-1", Accept(), "api:e1", T0 + timedelta(minutes=5))
    desk.apply(store, "T-1", Arrive(), "api:e1", T0 + timedelta(hours=1))
    resolve = Resolve("probe cable", "replaced", ("P-100",))
    desk.apply(store, "T-1", resolve, "api:e1", T0 + timedelta(hours=2))
    store.close()
    checkpoints = tmp_path / "checkpoints.jsonl"
    made = runner.invoke(
        app,
        [
            "audit",
            "checkpoint",
            "--out",
            str(checkpoints),
            "--key",
            str(key_path),
            "--store-url",
            f"sqlite:///{db}",
        ],
    )
    assert made.exit_code == 0, made.output
    # Written after the checkpoint, with the key: legitimate.
    store = SqliteStore(db)
    store.audit_signer = lambda entry: row_signature(key, entry)
    desk.apply(store, "T-1", SignOff("Dr. Chen", b"report"), "api:h1", T0 + timedelta(hours=3))
    store.close()
    return db, checkpoints, key_path


def verify(db: Path, checkpoints: Path, key: Path) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "audit",
            "verify",
            "--store-url",
            f"sqlite:///{db}",
            "--checkpoint",
            str(checkpoints),
            "--public-key",
            str(key.with_suffix(".pub")),
        ],
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def attack(db: Path, *statements: str) -> None:
    """Edit the database directly, as someone with the database's credentials can."""
    conn = sqlite3.connect(db)
    conn.executescript(
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + "".join(statements)
    )
    conn.commit()
    conn.close()


def rows(db: Path) -> list[audit.AuditEntry]:
    conn = sqlite3.connect(db)
    entries = [audit.from_row(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY seq")]
    conn.close()
    return entries


def test_an_untouched_log_verifies(signed_store: tuple[Path, Path, Path]) -> None:
    code, output = verify(*signed_store)
    assert code == 0, output
    assert "audit log intact" in output


def test_every_lifecycle_event_is_audited_with_its_fields(
    signed_store: tuple[Path, Path, Path],
) -> None:
    by_action = {e.action: e.data for e in rows(signed_store[0])}
    assert by_action["dispatched"]["engineer"] == "e1"
    assert by_action["resolve"]["event"] == {
        "fault": "probe cable",
        "resolution": "replaced",
        "parts": ["P-100"],
    }
    assert by_action["signoff"]["event"]["signer"] == "Dr. Chen"
    assert "report_sha256" in by_action["signoff"]["event"]


def test_truncation_is_detected(signed_store: tuple[Path, Path, Path]) -> None:
    db, checkpoints, key = signed_store
    attack(db, "DELETE FROM audit_log WHERE seq >= 3;")
    code, output = verify(db, checkpoints, key)
    assert code == 1 and "truncated" in output


def test_a_forged_append_is_detected(signed_store: tuple[Path, Path, Path]) -> None:
    db, checkpoints, key = signed_store
    head = rows(db)[-1]
    forged = audit.append(head, T0 + timedelta(days=1), "api:e1", "close", "T-1", {})
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", audit.to_row(forged))
    conn.commit()
    conn.close()
    code, output = verify(db, checkpoints, key)
    assert code == 1 and "appended without the audit signing key" in output


def test_a_rehashed_rewrite_is_detected(signed_store: tuple[Path, Path, Path]) -> None:
    db, checkpoints, key = signed_store
    entries = rows(db)
    rewritten: list[audit.AuditEntry] = entries[:1]
    for e in entries[1:]:
        data = {**e.data, "engineer": "mallory"} if e.action == "dispatched" else e.data
        rewritten.append(audit.append(rewritten[-1], e.at, e.actor, e.action, e.subject, data))
    assert audit.verify(rewritten).ok  # the chain alone would not notice
    inserts = "".join(
        "INSERT INTO audit_log VALUES ({});".format(
            ", ".join("'" + str(v).replace("'", "''") + "'" for v in audit.to_row(e))
        )
        for e in rewritten
    )
    attack(db, "DELETE FROM audit_log;", inserts)
    code, output = verify(db, checkpoints, key)
    assert code == 1 and "rewritten" in output


def test_a_ticket_edited_in_the_database_is_detected(
    signed_store: tuple[Path, Path, Path],
) -> None:
    db, checkpoints, key = signed_store
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tickets SET doc = json_set(doc, '$.fault', 'user error')")
    conn.commit()
    conn.close()
    code, output = verify(db, checkpoints, key)
    assert code == 1 and "T-1: changed outside the audited paths" in output


def test_a_corrupt_row_is_reported_not_a_crash(signed_store: tuple[Path, Path, Path]) -> None:
    db, checkpoints, key = signed_store
    attack(db, "UPDATE audit_log SET data = 'not json {' WHERE seq = 2;")
    code, output = verify(db, checkpoints, key)
    assert code == 1 and "row unreadable" in output


def test_a_forged_checkpoint_or_missing_store_is_refused(
    signed_store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    db, checkpoints, key = signed_store
    forged = tmp_path / "forged.jsonl"
    forged.write_text(checkpoints.read_text().replace('"seq": ', '"seq": 1', 1))
    code, output = verify(db, forged, key)
    assert code == 2 and "signature" in output
    missing = runner.invoke(app, ["audit", "verify", "--store-url", "sqlite:///no/such.db"])
    assert missing.exit_code == 2 and "no service store" in missing.output
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    assert verify(copy, checkpoints, key)[0] == 0
