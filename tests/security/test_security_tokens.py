"""API tokens: stored hashed, shown once, refused when malformed, wrong, expired or revoked."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.tokens import TokenError, TokenRegistry
from vigil.cli import app


def test_minted_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    registry = TokenRegistry(path)
    token, record = registry.mint("engineer", "e1")
    assert token not in path.read_text()
    assert token.split("_", 2)[2] not in path.read_text()
    assert record.hash.startswith("$argon2id$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = registry.lookup(token)
    assert found is not None and (found.role, found.subject) == ("engineer", "e1")
    # A second process (the API) reading the same file agrees.
    assert TokenRegistry(path).lookup(token) == found


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x",
        "vgl_",
        "vgl_000000000000_" + "A" * 43,
        "vgl_zz_" + "A" * 43,
        "A" * 1_000_000,
        "vgl_\x00",
        "vgl_000000000000_" + "A" * 44,
    ],
)
def test_malformed_or_unknown_tokens_are_refused(tmp_path: Path, bad: str) -> None:
    registry = TokenRegistry(tmp_path / "tokens.json")
    registry.mint("admin", None)
    assert registry.lookup(bad) is None


def test_a_wrong_secret_for_a_real_id_is_refused(tmp_path: Path) -> None:
    registry = TokenRegistry(tmp_path / "tokens.json")
    token, _ = registry.mint("admin", None)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert registry.lookup(forged) is None


def test_expired_and_revoked_tokens_stop_working(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    registry = TokenRegistry(path)
    token, record = registry.mint("hospital", "site-a")
    assert registry.lookup(token) is not None  # now cached
    TokenRegistry(path).revoke(record.id)  # by the CLI, another process
    assert registry.lookup(token) is None  # the cache does not outlive revocation
    with pytest.raises(TokenError, match="future"):
        registry.mint("admin", None, datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(TokenError, match="subject"):
        registry.mint("patient", None)
    with pytest.raises(TokenError, match="role"):
        registry.mint("root", None)


def test_cli_mints_once_lists_without_secrets_and_revokes(tmp_path: Path) -> None:
    runner = CliRunner()
    file = str(tmp_path / "tokens.json")
    added = runner.invoke(app, ["tokens", "add", "--role", "admin", "--file", file])
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert token.startswith("vgl_")
    listed = runner.invoke(app, ["tokens", "list", "--file", file])
    assert token not in listed.output and "admin" in listed.output
    token_id = token.split("_")[1]
    assert runner.invoke(app, ["tokens", "revoke", token_id, "--file", file]).exit_code == 0
    assert TokenRegistry(Path(file)).lookup(token) is None
    bad = runner.invoke(app, ["tokens", "add", "--role", "patient", "--file", file])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
