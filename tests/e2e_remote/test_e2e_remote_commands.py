"""Remote diagnosis end to end on a real Mosquitto: API → service → gateway → equipment → ticket.

The simulated ultrasound has a degrading probe (scripted fault), so its impedance test fails
with named elements; the gateway is offline when the command is sent and takes the retained
request when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from contract.commands import command_topic, equipment_command_topic
from service.commands_model import CommandState
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.e2e_remote.harness import GATEWAY, SITE, Site, cancel, remote_site
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

pytestmark = pytest.mark.services


@contextlib.asynccontextmanager
async def equipment(port: int, faults: tuple[Fault, ...] = ()) -> AsyncIterator[SimulatedFleet]:
    """Three pieces of simulated equipment online on the site broker while inside."""
    fleet = Fleet(FleetSpec(seed=3, patches=0, equipment=3, site=SITE, faults=faults))
    source = SimulatedFleet(fleet, 1_000_000, 0.2, site_broker=("127.0.0.1", port), remote=True)

    async def discard(_: object) -> None:
        return None

    task = asyncio.create_task(source.run(discard))
    try:
        yield source
    finally:
        await cancel(task)


async def _state(here: Site, command_id: str) -> str | None:
    record = await asyncio.to_thread(here.store.command, command_id)
    return None if record is None else str(record.state)


async def _retained(port: int, topic: str) -> bytes | None:
    """The retained message on ``topic``, or None (waits briefly for one to arrive)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-retained-probe") as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    return message.payload if isinstance(message.payload, bytes) else None
    return None


async def test_command_queued_while_gateway_offline_then_result_on_ticket(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    probe = Fault("us-000", FaultKind.PROBE_DEGRADATION, 0.0)
    async with (
        remote_site(mosquitto.port, tmp_path) as here,
        equipment(mosquitto.port, (probe,)) as sim,
    ):
        await wait_until_async(
            lambda: here.store.presence("us-000") is not None, 20, "us-000 relayed online"
        )
        assert here.store.presence("us-000").gateway_id == GATEWAY  # type: ignore[union-attr]
        ticket_id = await asyncio.to_thread(here.ticket_for, "us-000")
        await here.stop_gateway()
        await wait_until_async(
            lambda: str(here.store.presence(GATEWAY).state) == "offline",  # type: ignore[union-attr]
            20,
            "gateway offline",
        )

        body = {"command": "probe_impedance_test", "command_id": "cmd-probe-1"}
        sent = here.api.post(
            f"/tickets/{ticket_id}/commands", json=body, headers=here.headers("eng1")
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["gateway_id"] == GATEWAY and sent.json()["state"] == "queued"
        # Published retained for the absent gateway; nothing can answer it yet.
        await wait_until_async(
            lambda: here.store.command("cmd-probe-1").state is CommandState.SENT,  # type: ignore[union-attr]
            20,
            "command retained on the broker",
        )
        retry = here.api.post(
            f"/tickets/{ticket_id}/commands", json=body, headers=here.headers("eng1")
        )
        assert retry.status_code == 200 and retry.json()["command_id"] == "cmd-probe-1"

        here.start_gateway()  # back online: the retained request arrives
        await wait_until_async(
            lambda: here.store.command("cmd-probe-1").state.final,  # type: ignore[union-attr]
            30,
            "result stored",
        )
        listed = here.api.get(f"/tickets/{ticket_id}/commands", headers=here.headers("eng1"))
        assert listed.status_code == 200
        [record] = listed.json()
        assert record["state"] == "failed"
        result = record["result"]
        assert result["status"] == "failed" and result["gateway_id"] == GATEWAY
        assert result["result"]["failing_elements"], result
        assert sim.agents["us-000"].executed == ["cmd-probe-1"]
        actions = [e.action for e in here.store.audit_log() if e.subject == ticket_id]
        assert "command_requested" in actions and "command_result" in actions
        # Answered: the retained request is cleared, so it cannot run again.
        assert not await _retained(mosquitto.port, command_topic(GATEWAY, "cmd-probe-1"))


async def test_every_command_answers_and_timeouts_are_explicit(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    ng = Fault("endo-001", FaultKind.NG_FAULT, 0.0)
    async with remote_site(mosquitto.port, tmp_path) as here, equipment(mosquitto.port, (ng,)):
        for device_id in ("us-000", "endo-001", "us-002"):
            await wait_until_async(
                lambda d=device_id: here.store.presence(d) is not None, 20, f"{device_id} online"
            )
        us = await asyncio.to_thread(here.ticket_for, "us-000")
        endo = await asyncio.to_thread(here.ticket_for, "endo-001")
        eng = here.headers("eng1")
        expected = {
            (us, "self_test", "c-self"): "ok",
            (us, "read_error_log", "c-log"): "ok",
            (us, "reboot", "c-reboot"): "ok",
            (endo, "mains_ng_measurement", "c-ng"): "failed",
            (endo, "self_test", "c-endo-self"): "failed",
        }
        for (ticket_id, command, command_id), _ in expected.items():
            body = {"command": command, "command_id": command_id}
            answer = here.api.post(f"/tickets/{ticket_id}/commands", json=body, headers=eng)
            assert answer.status_code == 202, answer.text
        for (_, _, command_id), state in expected.items():
            await wait_until_async(
                lambda c=command_id: here.store.command(c).state.final,  # type: ignore[union-attr]
                30,
                f"{command_id} answered",
            )
            assert str(here.store.command(command_id).state) == state, command_id  # type: ignore[union-attr]
        ng_result = here.store.command("c-ng").result  # type: ignore[union-attr]
        assert ng_result is not None and ng_result.result["ng_v"]["max"] > 2.0

    # The simulator is stopped (its statuses say so, retained); a command to one of its devices
    # reaches the gateway, and the equipment never answers: an explicit "timeout" result.
    (tmp_path / "again").mkdir()
    async with remote_site(mosquitto.port, tmp_path / "again") as here:
        await wait_until_async(lambda: here.store.presence("us-002") is not None, 20, "relayed")
        t2 = await asyncio.to_thread(here.ticket_for, "us-002")
        body = {"command": "self_test", "command_id": "c-timeout", "timeout_s": 1.0}
        answer = here.api.post(f"/tickets/{t2}/commands", json=body, headers=here.headers("eng1"))
        assert answer.status_code == 202, answer.text
        await wait_until_async(
            lambda: here.store.command("c-timeout").state.final,  # type: ignore[union-attr]
            30,
            "timeout result",
        )
        record = here.store.command("c-timeout")
        assert record is not None and record.state is CommandState.TIMEOUT
        assert "did not answer" in record.result.message  # type: ignore[union-attr]


async def test_a_command_for_a_gateway_that_stays_offline_expires_explicitly(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    async with remote_site(mosquitto.port, tmp_path) as here, equipment(mosquitto.port) as sim:
        await wait_until_async(lambda: here.store.presence("us-000") is not None, 20, "online")
        ticket_id = await asyncio.to_thread(here.ticket_for, "us-000")
        await here.stop_gateway()
        body = {"command": "reboot", "command_id": "c-late", "expires_in_s": 10, "timeout_s": 1}
        sent = here.api.post(
            f"/tickets/{ticket_id}/commands", json=body, headers=here.headers("eng1")
        )
        assert sent.status_code == 202, sent.text
        await wait_until_async(
            lambda: here.store.command("c-late").state is CommandState.EXPIRED,  # type: ignore[union-attr]
            40,
            "expired at the service",
        )
        record = here.store.command("c-late")
        assert record is not None and record.result is not None
        assert "offline" in record.result.message
        # The broker dropped the request at its expiry and the service cleared it: a gateway
        # that comes back now runs nothing.
        assert not await _retained(mosquitto.port, command_topic(GATEWAY, "c-late"))
        agent = here.start_gateway()
        await wait_until_async(agent.connected.is_set, 20, "gateway back")
        assert sim.agents["us-000"].executed == [] and not agent.commands.results


async def test_a_gateway_restarted_mid_command_does_not_forward_it_again(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    async with remote_site(mosquitto.port, tmp_path) as here:
        async with equipment(mosquitto.port):
            await wait_until_async(lambda: here.store.presence("us-000") is not None, 20, "online")
        # The equipment is gone, so the reboot stays in flight at the gateway until it restarts.
        forwarded: list[bytes] = []
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="test-site-tap") as tap:
            await tap.subscribe(equipment_command_topic(SITE, "us-000"), qos=1)

            async def count() -> None:
                async for message in tap.messages:
                    forwarded.append(bytes(message.payload))  # type: ignore[arg-type]

            counting = asyncio.create_task(count())
            ticket_id = await asyncio.to_thread(here.ticket_for, "us-000")
            body = {"command": "reboot", "command_id": "c-cut", "timeout_s": 60}
            sent = here.api.post(
                f"/tickets/{ticket_id}/commands", json=body, headers=here.headers("eng1")
            )
            assert sent.status_code == 202, sent.text
            await wait_until_async(lambda: len(forwarded) == 1, 20, "reboot forwarded")
            await here.stop_gateway()  # the process is gone; only its journal remains
            agent = here.start_gateway()  # the retained request is delivered again
            await wait_until_async(
                lambda: here.store.command("c-cut").state.final,  # type: ignore[union-attr]
                30,
                "result after the restart",
            )
            await cancel(counting)
        record = here.store.command("c-cut")
        assert record is not None and record.state is CommandState.ERROR
        assert record.result is not None and "restarted" in record.result.message
        assert len(forwarded) == 1 and agent.commands.in_flight == {}
