"""Every `vigil … --help` prints its options' help whole: no text lost to markup, no empty
interpolations (issue 15: "in process ( settings)", defaults swallowed by `service api`)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from vigil.cli import app

runner = CliRunner()

# What a help text looks like when part of it was swallowed or interpolated from nothing.
ARTEFACTS = (
    re.compile(r"\(\s*settings\)"),  # "[rules]" eaten as markup
    re.compile(r"\(\s*\)"),  # an empty interpolation
    re.compile(r"\bNone\b"),  # a default printed as Python's None
    re.compile(r"\[default:\s*\]"),  # an empty default
    re.compile(r"\S \.(\s|$)"),  # "Token registry ." : the bracketed default vanished
)


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below ``command``, groups included."""
    paths = [path]
    commands: dict[str, object] = getattr(command, "commands", {})  # a group's
    if commands:
        for name, sub in sorted(commands.items()):
            paths += _commands(sub, (*path, name))
    return paths


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_found() -> None:
    assert ("ingest", "run") in COMMANDS
    assert ("service", "api") in COMMANDS
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "vigil")
def test_help_has_no_broken_interpolation(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    for artefact in ARTEFACTS:
        found = artefact.search(result.output)
        assert found is None, f"`vigil {' '.join(path)} --help`: {found!r} in\n{result.output}"


def _help(*path: str) -> str:
    """The help of ``vigil path…`` with its line wrapping undone."""
    return " ".join(runner.invoke(app, [*path, "--help"]).output.split())


def test_bracketed_words_survive() -> None:
    assert "in process ([rules] settings)" in _help("ingest", "run")
    api = _help("service", "api")
    assert "[default: service.tokens_file]" in api
    assert "[default: service.api_port]" in api
