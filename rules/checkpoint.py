"""Where the rule runtime keeps its state between processes: the engine snapshot and alert book.

A checkpoint is the engine snapshot (``rules.snapshot``) plus the active alerts of the book, so
that a clear after a restart finds its raise. ``FileCheckpoints`` keeps them in two files next
to each other (the single-process deployment); ``rules.lease.LeasedCheckpoints`` keeps them in
PostgreSQL, where a standby replica on another machine can read them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from contract import Severity
from rules.alerts import ActiveAlert, AlertBook

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The engine snapshot and the alert book's active alerts (JSON), taken together."""

    engine: bytes
    book: bytes


class CheckpointStore(Protocol):
    """Durable storage of the latest checkpoint."""

    def load(self) -> Checkpoint | None:
        """The latest checkpoint, None if there is none."""
        ...

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the latest checkpoint (atomically)."""
        ...


def encode_book(book: AlertBook) -> bytes:
    """The active alerts as JSON."""
    return json.dumps([asdict(alert) for alert in book.active()]).encode()


def decode_book(blob: bytes) -> AlertBook:
    """An alert book from ``encode_book``; ValueError if the blob is not one."""
    book = AlertBook()
    try:
        for row in json.loads(blob):
            row["severity"] = Severity(row["severity"])
            book.restore(ActiveAlert(**row))
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"not an alert book: {exc}") from exc
    return book


class FileCheckpoints:
    """The checkpoint in ``path`` (engine) and ``<path>.book.json`` (book), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book_path = path.with_name(path.name + ".book.json")

    def load(self) -> Checkpoint | None:
        """The files' contents; None if the engine file does not exist."""
        if not self.path.exists():
            return None
        book = self.book_path.read_bytes() if self.book_path.exists() else b"[]"
        return Checkpoint(self.path.read_bytes(), book)

    def save(self, checkpoint: Checkpoint) -> None:
        """Book first: an engine file always has a book at least as new beside it."""
        _write_atomically(self.book_path, checkpoint.book)
        _write_atomically(self.path, checkpoint.engine)

    def __str__(self) -> str:
        return str(self.path)


def _write_atomically(path: Path, blob: bytes) -> None:
    """Replace ``path`` with ``blob`` so a crash never leaves half a snapshot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
