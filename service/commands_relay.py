"""The service's leg of remote commands: publish queued ones, take results, expire the rest.

- Every ``poll_s`` the commands the API queued are published retained on
  ``vigil/v1/gateways/<gw>/commands/<id>`` as MQTT 5 requests (Response Topic: the gateway's
  result topic, Correlation Data: the command id, Message Expiry Interval: until it expires), so
  a gateway that is offline takes them when it reconnects and the broker drops them at expiry.
- ``vigil/v1/gateways/+/command-results`` is consumed on the shared ``ConsumeLoop``: each result
  is stored on its command and audited, then the retained request is cleared. A result for no
  issued command, or naming another gateway or device, is dead-lettered with the reason.
- A command with no result by expiry + timeout + grace ends ``expired``, audited, cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

import aiomqtt

from contract.commands import (
    command_result_subscription,
    command_result_topic,
    command_topic,
    decode_command_result,
    gateway_from_result_topic,
)
from infra.consume import ConsumeLoop, payload_bytes
from infra.errors import Poison
from infra.mqtt_properties import publish_properties, request_properties
from infra.time_us import now_us
from service import commands
from service.commands_model import CommandRecord, CommandState
from service.presence_consumer import ServiceDeadLetters, consumer_settings
from service.store import ServiceStore
from service.worker_settings import WorkerSettings

log = logging.getLogger(__name__)


class CommandRelay:
    """``await CommandRelay(settings, store).run()``: commands out, results in, until cancelled."""

    def __init__(self, settings: WorkerSettings, store: ServiceStore, poll_s: float = 0.5) -> None:
        self.store = store
        self.poll_s = poll_s
        self.client: aiomqtt.Client | None = None
        self.wake = asyncio.Event()
        self.published = 0
        self.loop = ConsumeLoop(
            consumer_settings(settings, "commands", command_result_subscription()),
            self._results,
            ServiceDeadLetters(store),
            name="command results",
            on_client=self._use_client,
        )

    def _use_client(self, client: aiomqtt.Client | None) -> None:
        self.client = client
        if client is not None:
            self.wake.set()

    async def run(self) -> None:
        """Consume results and publish/expire commands until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.loop.run())
            group.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self.wake.wait()
            self.wake.clear()
            client = self.client
            if client is None:
                continue
            try:
                await self.publish_queued(client)
                await self.expire_overdue(client)
            except aiomqtt.MqttError as exc:  # the consume loop reconnects; try again then
                log.warning("command relay could not publish (%s); retrying", exc)
            except Exception:  # a store outage or a bug: the next round tries again
                log.exception("command relay round failed; retrying")

    async def publish_queued(self, client: aiomqtt.Client) -> None:
        """Retain every queued command for its gateway and mark it sent."""
        queued = await asyncio.to_thread(self.store.commands_in_state, CommandState.QUEUED)
        for record in queued:
            left_s = math.ceil((record.expires_at_us - now_us()) / 1e6)
            if left_s <= 0:
                continue  # expired before it could go out: expire_overdue ends it
            props = publish_properties(
                command_result_topic(record.gateway_id), record.command_id.encode(), left_s
            )
            topic = command_topic(record.gateway_id, record.command_id)
            await client.publish(
                topic, record.request().encode(), qos=1, retain=True, properties=props
            )
            await asyncio.to_thread(commands.mark_sent, self.store, record, now_us())
            self.published += 1
            log.info("command %s retained for gateway %s", record.command_id, record.gateway_id)

    async def expire_overdue(self, client: aiomqtt.Client) -> None:
        """End every pending command whose time for a result is up."""
        now = now_us()
        for record in await asyncio.to_thread(self.store.commands_overdue, now):
            done = await asyncio.to_thread(commands.expire, self.store, record, now)
            if done is not None:
                await _clear(client, record)

    async def _results(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        for message in messages:
            gateway_id = gateway_from_result_topic(str(message.topic))
            result = decode_command_result(payload_bytes(message))
            if result.gateway_id != gateway_id:
                raise Poison(f"result from {result.gateway_id!r} on {gateway_id}'s topic")
            _, correlation = request_properties(message)
            if correlation is not None and correlation != result.command_id.encode():
                raise Poison(f"correlation data {correlation[:80]!r} is not the command id")
            try:
                await asyncio.to_thread(commands.record_result, self.store, result, now_us())
            except (LookupError, ValueError) as exc:
                raise Poison(str(exc)) from None
            record = await asyncio.to_thread(self.store.command, result.command_id)
            if record is not None:
                await _clear(client, record)


async def _clear(client: aiomqtt.Client, record: CommandRecord) -> None:
    """Remove the retained request: it is answered (or expired) and must not run again."""
    await client.publish(
        command_topic(record.gateway_id, record.command_id), b"", qos=1, retain=True
    )
