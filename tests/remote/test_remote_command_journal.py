"""A gateway restart neither runs a remote command twice nor loses its result (command journal).

Each "restart" is a new ``GatewayCommands`` over the same journal file, as a new process after a
crash would have; the retained request is then delivered again, as the broker does on reconnect.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from contract.commands import (
    CommandResult,
    CommandStatus,
    EquipmentReply,
    command_topic,
    decode_command_result,
)
from gateway.command_journal import INTERRUPTED, CommandJournal
from gateway.commands import GatewayCommands
from gateway.outbox import Outbox
from tests.remote.test_remote_gateway_commands import Sent, now_us, request


class Process:
    """One gateway process's command side, journalled in ``path``."""

    def __init__(self, path: Path) -> None:
        self.journal = CommandJournal(path, "gw-1")
        self.site: Sent = []
        self.up: Sent = []
        self.letters: list[str] = []
        self.commands = GatewayCommands("gw-1", "site-a", self.dead_letter, self.journal)

    async def dead_letter(self, _topic: str, reason: str, _payload: bytes) -> None:
        self.letters.append(reason)

    async def to_site(self, t: str, p: bytes, r: str | None, c: bytes | None) -> None:
        self.site.append((t, p, r, c))

    async def to_uplink(self, t: str, p: bytes, r: str | None, c: bytes | None) -> None:
        self.up.append((t, p, r, c))

    async def deliver(self, command_id: str = "c1") -> None:
        """The broker delivers the (retained) request."""
        req = request(command_id)
        await self.commands.on_request(
            command_topic("gw-1", command_id), req.encode(), None, self.to_site
        )

    async def reply(self, command_id: str, status: CommandStatus) -> None:
        reply = EquipmentReply(
            command_id=command_id, device_id="us-000", status=status, at_us=now_us()
        )
        await self.commands.on_reply("r", reply.encode(), command_id.encode())

    def results_sent(self) -> list[CommandResult]:
        return [decode_command_result(payload) for _, payload, _, _ in self.up]

    def crash(self) -> None:
        self.journal.close()


async def test_a_command_in_flight_at_a_crash_is_not_forwarded_again(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = Process(path)
    await first.deliver()
    assert len(first.site) == 1  # the equipment got it (and may have run it)
    first.crash()

    second = Process(path)
    await second.deliver()  # the retained request again, after reconnecting
    await second.commands.send_results(second.to_uplink)
    assert second.site == []  # never sent to the equipment a second time
    [result] = second.results_sent()
    assert result.command_id == "c1" and result.status is CommandStatus.ERROR
    assert result.message == INTERRUPTED


async def test_a_result_the_broker_never_took_is_sent_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = Process(path)
    await first.deliver()
    await first.reply("c1", CommandStatus.FAILED)  # ended, then the process died before sending
    first.crash()

    second = Process(path)
    await second.commands.send_results(second.to_uplink)
    assert [(r.command_id, r.status) for r in second.results_sent()] == [
        ("c1", CommandStatus.FAILED)
    ]
    await second.deliver()  # the service had not cleared it yet: answered, not run
    assert second.site == []


async def test_a_sent_result_is_not_sent_again_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = Process(path)
    await first.deliver()
    await first.reply("c1", CommandStatus.OK)
    await first.commands.send_results(first.to_uplink)
    first.crash()

    second = Process(path)
    await second.commands.send_results(second.to_uplink)
    assert second.up == []
    await second.deliver()
    await second.commands.send_results(second.to_uplink)
    assert second.site == [] and [r.status for r in second.results_sent()] == [CommandStatus.OK]


async def test_refusals_are_remembered_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = Process(path)
    late = request("late", issued_at_us=1, expires_at_us=2)
    await first.commands.on_request(
        command_topic("gw-1", "late"), late.encode(), None, first.to_site
    )
    first.crash()
    second = Process(path)
    assert second.commands.results["late"].status is CommandStatus.EXPIRED
    assert "late" in second.commands.unsent


async def test_the_journal_keeps_its_bound_but_never_drops_unanswered_ones(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    journal = CommandJournal(path, "gw-1", keep=3)
    commands = GatewayCommands("gw-1", "site-a", _ignore, journal)
    site: Sent = []

    async def to_site(t: str, p: bytes, r: str | None, c: bytes | None) -> None:
        site.append((t, p, r, c))

    async def to_uplink(t: str, p: bytes, r: str | None, c: bytes | None) -> None:
        pass

    in_flight = request("still-running")
    await commands.on_request(
        command_topic("gw-1", in_flight.command_id), in_flight.encode(), None, to_site
    )
    for n in range(6):
        req = request(f"done-{n}", issued_at_us=1, expires_at_us=2)  # ends at once (expired)
        await commands.on_request(
            command_topic("gw-1", req.command_id), req.encode(), None, to_site
        )
        await commands.send_results(to_uplink)
    journal.close()
    with sqlite3.connect(path) as db:
        kept = {row[0] for row in db.execute("SELECT command_id FROM command_journal")}
    assert "still-running" in kept and len(kept) <= 4
    assert {"done-5", "done-4"} <= kept


async def test_a_damaged_journal_row_is_dropped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Process(path).crash()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO command_journal (command_id, request, result, sent, updated_at_us)"
            " VALUES ('bad', x'00ff', NULL, 0, 1)"
        )
    second = Process(path)
    assert second.commands.results == {} and second.commands.unsent == {}


async def test_the_journal_shares_the_outbox_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, "gw-1")
    process = Process(path)
    await process.deliver()
    outbox.close()
    process.crash()
    assert Process(path).commands.in_flight == {}  # recovered as interrupted, not in flight


async def _ignore(_topic: str, _reason: str, _payload: bytes) -> None:
    return None
