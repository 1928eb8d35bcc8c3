"""infra.logs: JSON lines with context, start-up lines at any level, passwords never logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from infra.logs import JsonFormatter, configure, level_of, mask_url, show_start_lines, started
from vigil.cli import app
from vigil.settings import VigilSettings


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://vigil:s3cret@db:5432/vigil", "postgresql://vigil:***@db:5432/vigil"),
        ("postgres://u:p%40ss@h/d?sslmode=require", "postgres://u:***@h/d?sslmode=require"),
        ("host=db dbname=vigil password=s3cret user=v", "host=db dbname=vigil password=*** user=v"),
        ("host=db password='a b\\' c' dbname=v", "host=db password=*** dbname=v"),
        ("postgresql://u:p@ss@db/v", "postgresql://u:***@db/v"),
        ("postgresql://vigil@db/vigil", "postgresql://vigil@db/vigil"),
        ("postgresql://db:5432/vigil", "postgresql://db:5432/vigil"),
        ("sqlite:///var/vigil.db", "sqlite:///var/vigil.db"),
    ],
)
def test_mask_url_hides_every_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    start_level = logging.getLogger("vigil.start").level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("vigil.start").setLevel(start_level)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_context_and_tracebacks(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure("WARNING", "json")
    show_start_lines()
    log = logging.getLogger("vigil.test")
    log.info("not shown at WARNING")
    log.warning("dead-lettered %s", "x", extra={"topic": "t/1", "reason": "bad"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    started("ingest", "storage", url=mask_url("postgresql://v:pw@db/v"))
    warning, failed, start = _json_lines(stream)
    assert warning["message"] == "dead-lettered x" and warning["level"] == "WARNING"
    assert warning["topic"] == "t/1" and warning["reason"] == "bad"
    assert "ValueError: boom" in str(failed["exception"])
    # Start-up lines are INFO, yet shown at WARNING: they are what an operator needs first.
    assert start["logger"] == "vigil.start" and start["level"] == "INFO"
    assert start["component"] == "ingest" and start["url"] == "postgresql://v:***@db/v"
    assert "pw" not in stream.getvalue()


def test_text_format_keeps_the_context_in_the_message(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure("ERROR", "text")
    started("rules", "not shown: not a long-running process")
    show_start_lines()
    started("rules", "storage", url="sqlite:///x.db", mode="single worker")
    started("ingest", "connected to b:1", shown=("tls",), tls=True, broker="b:1")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("INFO vigil.start: rules: storage url=sqlite:///x.db mode=single worker")
    assert second.endswith("INFO vigil.start: ingest: connected to b:1 tls=True")


def test_json_formatter_never_fails_on_odd_values() -> None:
    record = logging.makeLogRecord({"msg": "m", "path": Path("/x"), "raw": b"\xff"})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["path"] == "/x" and entry["raw"] == "b'\\xff'"


def test_levels_by_name_or_number() -> None:
    assert level_of("info") == logging.INFO and level_of(" Warning ") == logging.WARNING
    assert level_of(logging.DEBUG) == logging.DEBUG
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        level_of("loud")


def test_logging_settings_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("VIGIL_LOGGING__FORMAT", "json")
    monkeypatch.setenv("VIGIL_LOGGING__LEVEL", "info")
    settings = VigilSettings()
    assert settings.logging.format == "json" and settings.logging.level == "INFO"
    monkeypatch.setenv("VIGIL_LOGGING__LEVEL", "chatty")
    with pytest.raises(ValidationError, match="unknown log level"):
        VigilSettings()
    monkeypatch.setenv("VIGIL_LOGGING__LEVEL", "info")
    monkeypatch.setenv("VIGIL_METRICS__INGEST_PORT", "70000")
    with pytest.raises(ValidationError, match="ingest_port"):
        VigilSettings()


def test_an_unknown_log_level_on_the_command_line_is_a_usage_error(restore_logging: None) -> None:
    result = CliRunner().invoke(app, ["--log-level", "chatty", "rules", "check", "x.yaml"])
    assert result.exit_code == 2
    assert "unknown log level 'chatty'" in result.output
