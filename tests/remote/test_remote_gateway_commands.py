"""The gateway's command bookkeeping without a broker: forward, answer, time out, never twice."""

from __future__ import annotations

import time

from contract.commands import (
    CommandName,
    CommandRequest,
    CommandStatus,
    EquipmentReply,
    command_result_topic,
    command_topic,
    equipment_reply_topic,
)
from gateway.commands import GatewayCommands
from tests.waiting import wait_until_async

Sent = list[tuple[str, bytes, str | None, bytes | None]]


def now_us() -> int:
    return time.time_ns() // 1000


def request(command_id: str = "c1", **changes: object) -> CommandRequest:
    fields: dict[str, object] = {
        "command_id": command_id,
        "gateway_id": "gw-1",
        "device_id": "us-000",
        "command": CommandName.SELF_TEST,
        "issued_at_us": now_us(),
        "expires_at_us": now_us() + 60_000_000,
        "timeout_s": 5.0,
        **changes,
    }
    return CommandRequest.model_validate(fields)


class Rig:
    def __init__(self) -> None:
        self.letters: list[tuple[str, str]] = []
        self.site: Sent = []
        self.up: Sent = []
        self.commands = GatewayCommands("gw-1", "site-a", self.dead_letter)

    async def dead_letter(self, topic: str, reason: str, _: bytes) -> None:
        self.letters.append((topic, reason))

    async def to_site(self, t: str, p: bytes, r: str | None, c: bytes | None) -> None:
        self.site.append((t, p, r, c))

    async def to_uplink(self, t: str, p: bytes, r: str | None, c: bytes | None) -> None:
        self.up.append((t, p, r, c))

    async def send(self, req: CommandRequest, response: str | None = None) -> None:
        topic = command_topic("gw-1", req.command_id)
        reply_to = response or command_result_topic("gw-1")
        await self.commands.on_request(topic, req.encode(), reply_to, self.to_site)

    def statuses(self) -> dict[str, CommandStatus]:
        return {r.command_id: r.status for r in self.commands.results.values()}


async def test_a_request_is_forwarded_as_mqtt5_request_and_the_reply_becomes_the_result() -> None:
    rig = Rig()
    await rig.send(request())
    [(topic, _, response, correlation)] = rig.site
    assert topic == "site/site-a/equipment/us-000/commands"
    assert response == equipment_reply_topic("site-a", "gw-1") and correlation == b"c1"
    reply = EquipmentReply(
        command_id="c1", device_id="us-000", status=CommandStatus.FAILED, at_us=now_us()
    )
    await rig.commands.on_reply(response, reply.encode(), b"c1")
    await rig.commands.send_results(rig.to_uplink)
    [(topic, payload, _, correlation)] = rig.up
    assert topic == command_result_topic("gw-1") and correlation == b"c1"
    assert b'"failed"' in payload and not rig.commands.unsent


async def test_a_redelivered_request_is_answered_again_not_run_again() -> None:
    rig = Rig()
    await rig.send(request())
    await rig.send(request())  # in flight: ignored
    assert len(rig.site) == 1
    reply = EquipmentReply(
        command_id="c1", device_id="us-000", status=CommandStatus.OK, at_us=now_us()
    )
    await rig.commands.on_reply("r", reply.encode(), b"c1")
    await rig.commands.send_results(rig.to_uplink)
    await rig.send(request())  # answered: the stored result goes out again
    await rig.commands.send_results(rig.to_uplink)
    assert len(rig.site) == 1 and len(rig.up) == 2


async def test_refusals_and_timeouts_are_explicit_results() -> None:
    rig = Rig()
    await rig.send(request("other-gw", gateway_id="gw-2"))
    await rig.send(request("hijack"), response="vigil/v1/gateways/gw-2/command-results")
    await rig.send(request("late", issued_at_us=1, expires_at_us=2))
    await rig.send(request("slow", timeout_s=0.001))
    await wait_until_async(lambda: rig.commands.expire_overdue() == 1, 5, "the slow one overdue")
    assert rig.statuses() == {
        "other-gw": CommandStatus.REJECTED,
        "hijack": CommandStatus.REJECTED,
        "late": CommandStatus.EXPIRED,
        "slow": CommandStatus.TIMEOUT,
    }
    assert len(rig.letters) == 2  # the two hostile ones are kept with their reasons


async def test_unusable_requests_and_replies_are_dead_lettered() -> None:
    rig = Rig()
    await rig.commands.on_request(command_topic("gw-1", "x"), b"{}", None, rig.to_site)
    await rig.commands.on_request(command_topic("gw-1", "x"), b"", None, rig.to_site)  # cleared
    await rig.commands.on_reply("r", b"{}", b"nobody")
    await rig.send(request())
    await rig.commands.on_reply("r", b"not json", b"c1")
    assert [reason.split(":")[0] for _, reason in rig.letters] == [
        "command request",
        "reply for no command in flight ('nobody')",
        "equipment reply",
    ]
    assert rig.statuses() == {"c1": CommandStatus.ERROR}
