"""What the gateway did with each remote command, on disk, so that a restart changes nothing.

A command is written down before it is forwarded to the equipment, and its result when it ends.
After a crash or a restart the service's retained request is delivered again; without this
journal the new process would forward it a second time — a second reboot, a second impedance
probe on a patient's equipment. With it:

- a command that had ended is answered from its stored result (re-sent if the broker never
  took it);
- a command that was in flight when the gateway stopped is **not** forwarded again (the equipment
  may already have run it): it ends as an ``error`` saying so, and the engineer decides whether
  to issue it anew.

The journal lives in the outbox's SQLite file (its own table and connection, WAL), keeps the
newest ``keep`` commands, and is written on the event loop: commands are rare and each write is
one small statement.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from contract import ContractError
from contract.commands import (
    CommandRequest,
    CommandResult,
    decode_command_request,
    decode_command_result,
)
from infra.sqlite_db import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS command_journal (
    command_id TEXT PRIMARY KEY,
    request BLOB NOT NULL,
    result BLOB,
    sent INTEGER NOT NULL DEFAULT 0,
    updated_at_us INTEGER NOT NULL
)
"""
_UPDATED = "CREATE INDEX IF NOT EXISTS command_journal_updated ON command_journal (updated_at_us)"
INTERRUPTED = (
    "the gateway restarted while this command was in flight; it was not sent again because the"
    " equipment may already have run it — issue it again if it is still needed"
)


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Recovered:
    """What a previous process left: results (oldest first), which were not yet sent, and the
    requests that were in flight when it stopped."""

    results: list[CommandResult] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)
    interrupted: list[CommandRequest] = field(default_factory=list)
    unreadable: int = 0


class CommandJournal:
    """The command journal in ``path`` (normally the outbox's file)."""

    def __init__(self, path: Path | str, gateway_id: str, keep: int = 1024) -> None:
        self.gateway_id = gateway_id
        self.keep = keep
        # The outbox's writes are short transactions: a few seconds of waiting is plenty.
        self._db: sqlite3.Connection = connect(path, busy_timeout_s=5.0)
        self._db.execute(_SCHEMA)
        self._db.execute(_UPDATED)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def forwarded(self, request: CommandRequest) -> None:
        """Record ``request`` as in flight; called before it is sent to the equipment."""
        self._db.execute(
            "INSERT OR IGNORE INTO command_journal (command_id, request, updated_at_us)"
            " VALUES (?, ?, ?)",
            (request.command_id, request.encode(), _now_us()),
        )

    def finished(self, request: CommandRequest, result: CommandResult) -> None:
        """Record how ``request`` ended (not yet sent upstream)."""
        self._db.execute(
            "INSERT INTO command_journal (command_id, request, result, sent, updated_at_us)"
            " VALUES (?, ?, ?, 0, ?) ON CONFLICT (command_id) DO UPDATE SET"
            " result = excluded.result, sent = 0, updated_at_us = excluded.updated_at_us",
            (request.command_id, request.encode(), result.encode(), _now_us()),
        )
        self._prune()

    def sent(self, command_id: str) -> None:
        """Record that the broker took ``command_id``'s result."""
        self._db.execute("UPDATE command_journal SET sent = 1 WHERE command_id = ?", (command_id,))

    def recover(self) -> Recovered:
        """What earlier processes left in the journal."""
        rows = self._db.execute(
            "SELECT command_id, request, result, sent FROM command_journal"
            " ORDER BY updated_at_us, command_id"
        ).fetchall()
        found = Recovered()
        for command_id, request_bytes, result_bytes, sent in rows:
            try:
                if result_bytes is None:
                    found.interrupted.append(decode_command_request(bytes(request_bytes)))
                    continue
                result = decode_command_result(bytes(result_bytes))
            except ContractError:
                # Written by this module, so only a damaged file gets here: forget the row
                # rather than fail every start.
                found.unreadable += 1
                self._db.execute("DELETE FROM command_journal WHERE command_id = ?", (command_id,))
                continue
            found.results.append(result)
            if not sent:
                found.unsent.append(command_id)
        return found

    def _prune(self) -> None:
        # Only answered commands beyond the newest ``keep`` go; in-flight and unsent ones stay.
        self._db.execute(
            "DELETE FROM command_journal WHERE sent = 1 AND command_id IN (SELECT command_id"
            " FROM command_journal ORDER BY updated_at_us DESC LIMIT -1 OFFSET ?)",
            (self.keep,),
        )
