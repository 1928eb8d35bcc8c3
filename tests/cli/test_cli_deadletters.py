"""`vigil deadletters list|show|export` on the gateway outbox and on the ingest store."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.outbox import Outbox
from infra.telemetry import DeadLetter, open_store
from vigil.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200", "VIGIL_CONFIG": "/nonexistent.toml"}
# No NUL: this branch's stores do not escape dead-letter text yet (main's storable_letter does).
HOSTILE_REASON = "bad \x1b[2J\x1b[31m[red]markup[/red]\nsecond line"
BATCHES = "vigil/v1/gateways/gw-1/batches"
HOSTILE_PAYLOAD = b'{"device_id": "us\\u0000"}\x00\x1b[2J\xff'


def invoke(*args: str) -> str:
    """Run ``vigil deadletters …``; assert it succeeded and printed nothing raw."""
    result = runner.invoke(app, ["deadletters", *args], env=ENV)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x00" not in result.output
    return result.output


def check_place(*where: str, gateway_fields: bool) -> None:
    """list, show and export against one place holding two letters (the newest is hostile)."""
    listed = invoke("list", *where)
    assert "2 dead letters" in listed
    assert "first reason" in listed and "[red]markup[/red]" in listed  # shown, not rendered
    assert "\\x1b[2J" in listed
    first_line = next(line for line in listed.splitlines() if "first reason" in line)
    first_id = first_line.split("│")[1].strip()

    shown = invoke("show", first_id, *where)
    assert "first reason" in shown and "payload" in shown
    exported = invoke("export", *where)
    docs = [json.loads(line) for line in exported.splitlines()]
    assert [d["reason"] for d in docs][1] == "first reason"
    newest = docs[0]
    assert base64.b64decode(newest["payload_base64"]) == HOSTILE_PAYLOAD
    assert newest["payload"] is None  # not UTF-8: only base64
    assert ("gateway_id" in newest) and gateway_fields == (docs[1]["gateway_id"] == "gw-1")
    hostile = invoke("show", str(newest["id"]), *where)
    assert "\\x00\\x1b[2J\\xff" in hostile


def test_gateway_outbox_letters_are_listed_shown_and_exported(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, "gw-1")
    outbox.dead_letter(
        1_780_000_000_000_000, "site/a/equipment/us-1/telemetry", "first reason", b"{}"
    )
    outbox.dead_letter(1_780_000_001_000_000, "us-\x00", HOSTILE_REASON, HOSTILE_PAYLOAD)
    outbox.close()
    check_place("--outbox", str(path), gateway_fields=False)
    output = tmp_path / "letters.jsonl"
    assert "2 dead letters written" in invoke(
        "export", "--outbox", str(path), "--output", str(output)
    )
    assert len(output.read_text().splitlines()) == 2


def _fill(url: str) -> None:
    first = DeadLetter(1_780_000_000_000_000, BATCHES, "first reason", b"{}", "gw-1", 3)
    hostile = DeadLetter(1_780_000_001_000_000, BATCHES, HOSTILE_REASON, HOSTILE_PAYLOAD)
    with open_store(url) as store:
        store.migrate()
        store.store_dead_letters([first, hostile])


def test_sqlite_ingest_store_letters_are_listed_shown_and_exported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    _fill(url)
    check_place("--store", url, gateway_fields=True)


@pytest.mark.services
def test_timescale_ingest_store_letters_are_listed_shown_and_exported(timescale_dsn: str) -> None:
    _fill(timescale_dsn)
    check_place("--store", timescale_dsn, gateway_fields=True)


def test_missing_places_and_ids_are_clear_errors(tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["deadletters", "list", "--outbox", str(tmp_path / "x.db")], env=ENV
    )
    assert missing.exit_code == 2 and "no outbox at" in missing.output
    no_store = runner.invoke(
        app, ["deadletters", "list", "--store", f"sqlite:///{tmp_path / 'x.db'}"], env=ENV
    )
    assert no_store.exit_code == 2 and "no ingest store" in no_store.output
    assert not (tmp_path / "x.db").exists()  # looking created nothing
    path = tmp_path / "outbox.db"
    Outbox(path, "gw-1").close()
    unknown = runner.invoke(app, ["deadletters", "show", "7", "--outbox", str(path)], env=ENV)
    assert unknown.exit_code == 1 and "no dead letter 7" in unknown.output
    both = runner.invoke(
        app, ["deadletters", "list", "--outbox", str(path), "--store", "sqlite:///x"], env=ENV
    )
    assert both.exit_code == 2
