"""The `vigil` command line through typer's CliRunner: help, `rules check`, the demo, the docs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from testing_services import free_port
from vigil.cli import app
from vigil.settings import configuration_reference

ROOT = Path(__file__).parents[2]
runner = CliRunner()


def test_help_lists_every_group() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for group in ("sim", "gateway", "ingest", "rules", "service", "audit", "demo"):
        assert f" {group} " in result.output, group


def test_rules_check_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "rules:\n  - {id: wet, kind: threshold, severity: warning, source: s, "
        "scope: {metric: exudate}, raise: {above: 85}, clear: {below: 20}}\n"
    )
    result = runner.invoke(app, ["rules", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 rule file(s) OK" in result.output


def test_rules_check_names_file_rule_and_field_of_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - {id: wet, kind: threshold, severity: warning, source: s, "
        "scope: {metric: exudate}, raise: {above: high}, clear: {below: 20}}\n"
    )
    result = runner.invoke(app, ["rules", "check", str(bad)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert result.output.startswith(f"{bad}: rule 'wet': raise.above: "), result.output


def test_rules_run_reads_the_packs_from_settings(tmp_path: Path) -> None:
    # A pack that does not exist fails before any broker is contacted, naming the pack.
    result = runner.invoke(
        app,
        ["rules", "run"],
        env={
            "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
            "VIGIL_RULES__PACKS": '["nope"]',
            "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{tmp_path / 'vigil.db'}",
        },
    )
    assert result.exit_code == 2
    assert "unknown rule pack 'nope'" in result.output


def test_demo_reconciles_and_prints_dispatched_tickets(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "demo",
            "--ticks",
            "60",
            "--patches",
            "10",
            "--port",
            str(free_port()),
            "--workdir",
            str(tmp_path),
        ],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    stored = next(line for line in lines if "readings stored" in line and "│" in line)
    produced = next(line for line in lines if "readings produced" in line)
    assert stored.split()[-2] == produced.split()[-2]  # "│ readings stored │ 3,900 │"
    assert any("lost / duplicated" in line and "0 / 0" in line for line in lines)
    assert any("value checksum match" in line and "yes" in line for line in lines)
    assert "service desk — tickets opened by alerts" in result.output
    # Within 10 simulated hours the detached patch is off the skin: a dispatched ticket.
    assert any("patch-0007" in line and "patch.off_skin" in line for line in lines)
    assert "Who was sent, and why:" in result.output
    assert "region north, skilled in patch" in " ".join(result.output.split())


def test_configuration_reference_is_up_to_date() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc == configuration_reference(), (
        "docs/configuration.md is stale: python -m vigil.settings > docs/configuration.md"
    )
