"""Process logs an operator can use: plain text or one JSON object a line, on stderr.

The command line configures this once (``vigil --log-format json …`` or ``[logging]``). Every
long-running process says at start what it connected to and subscribed to through ``started``
(logger ``vigil.start``); its `run` command calls ``show_start_lines`` so they are emitted
whatever the level: an operator reading a failed deploy needs them most when the level is
quiet. Context goes in ``extra=``: the text format keeps it in the message, the JSON format
also gives each item its own key.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
START_LOGGER = "vigil.start"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Greedy up to the last "@" of the authority: a password may itself hold an "@".
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^/\s]*(?P<at>@)", re.I)
_DSN_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str | int = logging.WARNING, fmt: LogFormat = "text") -> None:
    """Send every log record to stderr in ``fmt``, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_of(level))
    # Start lines follow the level again until a run command asks for them (show_start_lines).
    logging.getLogger(START_LOGGER).setLevel(logging.NOTSET)


def show_start_lines() -> None:
    """Emit ``started`` lines whatever the level (a long-running process; not the demo)."""
    start = logging.getLogger(START_LOGGER)
    start.setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))


def level_of(level: str | int) -> int:
    """A level name (any case) or number as a number; ValueError for an unknown name."""
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    return number


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: URL userinfo and libpq ``password=``."""
    masked = _URL_PASSWORD.sub(r"\g<head>***\g<at>", url)
    return _DSN_PASSWORD.sub(r"\g<head>***", masked)


def started(
    component: str, what: str, *, shown: Sequence[str] | None = None, **context: Any
) -> None:
    """Log what ``component`` connected to or subscribed to at start, with ``context``.

    The text line appends the ``shown`` keys of ``context`` (default: all) as ``key=value``;
    JSON has them all as keys. Keys must not be LogRecord attributes (``name``, ``process`` …).
    """
    keys = context if shown is None else shown
    detail = "".join(f" {key}={context[key]}" for key in keys)
    logging.getLogger(START_LOGGER).info(
        "%s: %s%s", component, what, detail, extra={"component": component, **context}
    )
