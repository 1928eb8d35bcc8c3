"""`vigil deadletters …`: inspect what the gateway or ingest could not use, and why.

Dead letters quote hostile input: everything printed here is escaped (no control characters,
no terminal escape sequences, no rich markup), and ``export`` writes ASCII JSON lines.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contract.errors import printable
from infra.time_us import datetime_from_us
from vigil.settings import VigilSettings

if TYPE_CHECKING:
    from gateway.dead_letters import StoredLetter
    from infra.telemetry import DeadLetter, ReadingStore

T = TypeVar("T")
app = typer.Typer(
    help="Dead letters of the gateway outbox or the ingest store.", no_args_is_help=True
)
console = Console()
_PAGE = 1000


class Origin(StrEnum):
    """Whose dead letters: the gateway's outbox or ingest's store."""

    GATEWAY = "gateway"
    INGEST = "ingest"


@dataclass(frozen=True, slots=True)
class Row:
    """One dead letter, from either place."""

    id: int | None
    received_at_us: int
    source: str
    reason: str
    payload: bytes
    gateway_id: str | None = None
    batch_seq: int | None = None


OriginOpt = Annotated[
    Origin | None,
    typer.Option(
        "--from", help="gateway or ingest (default: ingest, or what --outbox/--store says)."
    ),
]
OutboxOpt = Annotated[
    Path | None, typer.Option(help="Gateway outbox file (default: [gateway] outbox_path).")
]
StoreOpt = Annotated[
    str | None, typer.Option(help="Ingest store URL (default: [ingest] storage_url).")
]


class Letters:
    """Read-only access to one place's dead letters."""

    def __init__(self, origin: Origin | None, outbox: Path | None, store: str | None) -> None:
        settings = VigilSettings()
        self.origin = origin or (Origin.GATEWAY if outbox is not None else Origin.INGEST)
        self.outbox = outbox or settings.gateway.outbox_path
        self.url = store or settings.ingest.storage_url

    def page(self, limit: int, offset: int) -> list[Row]:
        """Up to ``limit`` letters, newest first, after skipping ``offset``."""
        if self.origin is Origin.GATEWAY:
            from gateway import dead_letters

            with _closing_db(self.outbox) as db:
                return [_from_outbox(x) for x in dead_letters.page(db, limit, offset)]
        with _store(self.url) as store:
            return [_from_store(x) for x in store.dead_letters(limit, offset)]

    def one(self, letter_id: int) -> Row | None:
        """The letter with this id, or None."""
        if self.origin is Origin.GATEWAY:
            from gateway import dead_letters

            with _closing_db(self.outbox) as db:
                letter = dead_letters.by_id(db, letter_id)
                return None if letter is None else _from_outbox(letter)
        with _store(self.url) as store:
            found = store.dead_letter(letter_id)
            return None if found is None else _from_store(found)

    def summary(self) -> str:
        """Where the letters are and how many, with the gateway's drop count."""
        if self.origin is Origin.GATEWAY:
            from gateway import dead_letters

            with _closing_db(self.outbox) as db:
                s = dead_letters.stats(db)
            return (
                f"gateway outbox {self.outbox}: {s.count} dead letters, {s.bytes:,} bytes;"
                f" {s.dropped} dropped by the byte bound"
            )
        with _store(self.url) as store:
            return f"ingest store: {store.dead_letter_count()} dead letters"

    def all(self) -> Iterator[Row]:
        """Every letter, newest first, a page at a time."""
        offset = 0
        while rows := self.page(_PAGE, offset):
            yield from rows
            offset += len(rows)


@app.command("list")
def deadletters_list(
    origin: OriginOpt = None,
    outbox: OutboxOpt = None,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Letters to show.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Newest letters to skip.")] = 0,
) -> None:
    """The newest dead letters: id, time, source and reason."""
    letters = _open(origin, outbox, store)
    rows = _guarded(lambda: letters.page(limit, offset))
    table = Table("id", "received (UTC)", "source", "reason", title=_guarded(letters.summary))
    for row in rows:
        table.add_row(
            Text(str(row.id)),
            Text(_time(row.received_at_us)),
            Text(printable(row.source, 80)),
            Text(printable(row.reason, 300)),
        )
    console.print(table)


@app.command("show")
def deadletters_show(
    letter_id: Annotated[int, typer.Argument(help="The dead letter's id (see `list`).")],
    origin: OriginOpt = None,
    outbox: OutboxOpt = None,
    store: StoreOpt = None,
    max_chars: Annotated[int, typer.Option(min=1, help="Payload characters to show.")] = 4096,
) -> None:
    """One dead letter with its payload, escaped for the terminal."""
    letters = _open(origin, outbox, store)
    row = _guarded(lambda: letters.one(letter_id))
    if row is None:
        console.print(f"no dead letter {letter_id} in the {letters.origin} dead letters")
        raise typer.Exit(1)
    lines = [
        ("id", str(row.id)),
        ("received", _time(row.received_at_us)),
        ("source", printable(row.source, 1000)),
        ("reason", printable(row.reason, 4000)),
    ]
    if row.gateway_id is not None or row.batch_seq is not None:
        lines += [("gateway_id", printable(str(row.gateway_id))), ("batch_seq", str(row.batch_seq))]
    lines += [
        ("payload", f"{len(row.payload)} bytes"),
        ("", printable(row.payload.decode("utf-8", "backslashreplace"), max_chars)),
    ]
    for key, value in lines:
        console.print(Text(f"{key:>10}  {value}" if key else value))


@app.command("export")
def deadletters_export(
    origin: OriginOpt = None,
    outbox: OutboxOpt = None,
    store: StoreOpt = None,
    output: Annotated[
        Path | None, typer.Option(help="JSON lines file to write (default: standard output).")
    ] = None,
) -> None:
    """Every dead letter as one JSON object per line (payload as text and as base64)."""
    letters = _open(origin, outbox, store)
    if output is None:
        _guarded(lambda: _export(letters, sys.stdout))
        return
    with output.open("w", encoding="ascii") as out:
        count = _guarded(lambda: _export(letters, out))
    console.print(f"{count} dead letters written to {output}")


def _export(letters: Letters, out: TextIO) -> int:
    count = 0
    for row in letters.all():
        out.write(json.dumps(_document(row)) + "\n")
        count += 1
    return count


def _document(row: Row) -> dict[str, Any]:
    """A letter as a JSON object; ASCII only (json escapes the rest)."""
    try:
        text: str | None = row.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "id": row.id,
        "received_at_us": row.received_at_us,
        "received_at": _time(row.received_at_us),
        "source": row.source,
        "reason": row.reason,
        "gateway_id": row.gateway_id,
        "batch_seq": row.batch_seq,
        "payload": text,
        "payload_base64": base64.b64encode(row.payload).decode(),
    }


def _open(origin: Origin | None, outbox: Path | None, store: str | None) -> Letters:
    if outbox is not None and store is not None:
        console.print("give --outbox or --store, not both")
        raise typer.Exit(2)
    return Letters(origin, outbox, store)


def _guarded(read: Callable[[], T]) -> T:
    """``read()``, turning a missing or unreadable database into a clear exit 2."""
    try:
        return read()
    except Exception as exc:  # any driver's error: the message says which
        console.print(Text(f"cannot read dead letters: {printable(str(exc))}"))
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _closing_db(path: Path) -> Iterator[sqlite3.Connection]:
    """The outbox file, read-only (beside a running gateway)."""
    from gateway.dead_letters import open_read_only

    db = open_read_only(path)
    try:
        yield db
    finally:
        db.close()


@contextlib.contextmanager
def _store(url: str) -> Iterator[ReadingStore]:
    """The ingest store, opened without migrating; a missing SQLite file is an error."""
    from infra.telemetry import open_store

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise FileNotFoundError(f"no ingest store at {url}")
    with open_store(url) as store:
        yield store


def _from_outbox(letter: StoredLetter) -> Row:
    return Row(letter.id, letter.received_at_us, letter.source, letter.reason, letter.payload)


def _from_store(letter: DeadLetter) -> Row:
    return Row(
        letter.id,
        letter.received_at_us,
        letter.source,
        letter.reason,
        letter.payload,
        letter.gateway_id,
        letter.batch_seq,
    )


def _time(at_us: int) -> str:
    try:
        return datetime_from_us(at_us).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, ValueError):
        return str(at_us)
