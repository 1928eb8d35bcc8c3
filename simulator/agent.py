"""A piece of simulated equipment's MQTT 5 session: presence with a last will, and commands.

``EquipmentAgent`` opens the device's own client on the site broker with a will on its status
topic (retained ``offline``, reason ``last_will``), publishes ``online`` retained, and answers
every request on its command topic on the request's Response Topic with its Correlation Data.
A command id it has answered is answered again from memory, not run twice (a reboot stays one
reboot when the gateway retries).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Self

import aiomqtt

from contract import ContractError
from contract.commands import (
    CommandName,
    CommandRequest,
    CommandStatus,
    EquipmentReply,
    decode_command_request,
    equipment_command_topic,
)
from contract.presence import (
    PresenceKind,
    PresenceReason,
    equipment_status_topic,
    offline,
    online,
)
from infra.mqtt_properties import publish_properties, request_properties
from infra.mqtt_tls import MqttTls, tls_context
from simulator.diagnostics import Outcome, run_command
from simulator.equipment import EquipmentModel

log = logging.getLogger(__name__)

MAX_REMEMBERED = 1024  # answered command ids kept for retries


def _now_us() -> int:
    return time.time_ns() // 1000


class EquipmentAgent:
    """``async with EquipmentAgent(model, site, host, port) as agent:`` — online until exit."""

    def __init__(
        self,
        model: EquipmentModel,
        site: str,
        host: str,
        port: int,
        *,
        tls: MqttTls | None = None,
        sim_time: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.model = model
        self.site = site
        self.sim_time = sim_time  # the fleet's simulated time, which scripted faults follow
        self.since_us = _now_us()
        self.answered: dict[str, EquipmentReply] = {}
        self.executed: list[str] = []  # command ids actually run, in order (tests, demo)
        self.reboots = 0
        self.status_topic = equipment_status_topic(site, model.device_id)
        will = offline(
            PresenceKind.EQUIPMENT,
            model.device_id,
            self.since_us,
            self.since_us,
            PresenceReason.LAST_WILL,
        )
        self.client = aiomqtt.Client(
            host,
            port,
            identifier=f"equipment-{model.device_id}",
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.status_topic, will.encode(), qos=1, retain=True),
            tls_context=tls_context(tls),
        )
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self.client)
        status = online(PresenceKind.EQUIPMENT, self.model.device_id, _now_us(), self.since_us)
        await self.client.publish(self.status_topic, status.encode(), qos=1, retain=True)
        await self.client.subscribe(equipment_command_topic(self.site, self.model.device_id), 1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            goodbye = offline(
                PresenceKind.EQUIPMENT,
                self.model.device_id,
                _now_us(),
                self.since_us,
                PresenceReason.SHUTDOWN,
            )
            await self.client.publish(self.status_topic, goodbye.encode(), qos=1, retain=True)
        await self._stack.aclose()

    async def serve(self) -> None:
        """Answer commands until cancelled (or the connection drops: MqttError)."""
        async for message in self._messages():
            await self.answer(message)

    async def _messages(self) -> AsyncIterator[aiomqtt.Message]:
        async for message in self.client.messages:
            yield message

    async def answer(self, message: aiomqtt.Message) -> None:
        """Run one request and reply on its Response Topic; a request without one is dropped."""
        response_topic, correlation = request_properties(message)
        if response_topic is None:
            log.warning("%s: a command without a Response Topic; ignored", self.model.device_id)
            return
        payload = message.payload if isinstance(message.payload, bytes) else b""
        reboots = self.reboots
        reply = self.reply_to(payload)
        props = publish_properties(correlation=correlation)
        await self.client.publish(response_topic, reply.encode(), qos=1, properties=props)
        if self.reboots != reboots:  # back up after the restart: a new uptime
            status = online(PresenceKind.EQUIPMENT, self.model.device_id, _now_us(), self.since_us)
            await self.client.publish(self.status_topic, status.encode(), qos=1, retain=True)

    def reply_to(self, payload: bytes) -> EquipmentReply:
        """The reply to one request payload (remembered per command id)."""
        try:
            request = decode_command_request(payload)
        except ContractError as exc:
            return EquipmentReply(
                command_id="unreadable",
                device_id=self.model.device_id,
                status=CommandStatus.REJECTED,
                at_us=_now_us(),
                message=str(exc)[:500],
            )
        if (earlier := self.answered.get(request.command_id)) is not None:
            return earlier
        reply = self._run(request)
        if len(self.answered) >= MAX_REMEMBERED:
            self.answered.pop(next(iter(self.answered)))
        self.answered[request.command_id] = reply
        return reply

    def _run(self, request: CommandRequest) -> EquipmentReply:
        if request.device_id != self.model.device_id:
            outcome = Outcome(CommandStatus.REJECTED, {}, f"this is {self.model.device_id}")
        else:
            self.executed.append(request.command_id)
            outcome = run_command(self.model, request.command, request.args, self.sim_time())
            if request.command is CommandName.REBOOT and outcome.status is CommandStatus.OK:
                uptime = (_now_us() - self.since_us) / 1e6
                self.reboots += 1
                self.since_us = _now_us()
                outcome = Outcome(outcome.status, {**outcome.result, "uptime_before_s": uptime})
        return EquipmentReply(
            command_id=request.command_id,
            device_id=self.model.device_id,
            status=outcome.status,
            at_us=_now_us(),
            result=outcome.result,
            message=outcome.message[:500],
        )
