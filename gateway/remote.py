"""The gateway's MQTT 5 side channel: presence, equipment presence relay, remote commands.

Two clients of their own, beside the uplink and the bridge (which stay MQTT 3.1.1-capable):

- on the uplink broker, ``vigil-gateway-<id>-remote`` with a last will on
  ``vigil/v1/gateways/<id>/status`` (retained ``offline``, reason ``last_will``); it publishes
  ``online`` retained on connect and ``offline``/``shutdown`` on a clean stop, relays equipment
  statuses to ``…/status/<device>`` (retained), takes commands from ``…/commands/+`` (retained
  there by the service, so commands sent while the gateway was away arrive on connect) and
  answers on ``…/command-results``;
- on the site broker, the same id, subscribed to the equipment statuses and to its reply topic.

Statuses and replies that break the contract are dead-lettered in the outbox with the reason.
Either broker lost: both clients reconnect after a back-off; commands in flight keep their
deadlines and results not yet published are published after the reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiomqtt

from contract import ContractError
from contract.commands import command_subscription, equipment_reply_topic
from contract.presence import (
    PresenceKind,
    PresenceReason,
    PresenceStatus,
    decode_presence,
    device_from_equipment_status_topic,
    equipment_status_subscription,
    gateway_status_topic,
    offline,
    online,
    relayed_status_topic,
)
from gateway.command_journal import CommandJournal
from gateway.commands import GatewayCommands, Publish, is_command_topic
from gateway.dead_letters import Letter
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.outbox import Outbox
from gateway.uplink import UplinkSettings
from infra.consume import payload_bytes
from infra.mqtt_properties import publish_properties, request_properties
from infra.mqtt_tls import MqttTls, tls_context
from infra.tasks import supervise

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Presence and remote commands (both brokers must speak MQTT 5)."""

    reconnect_backoff_s: float = 1.0
    timeout_tick_s: float = 0.2  # how often commands in flight are checked for timeouts


def _now_us() -> int:
    return time.time_ns() // 1000


def _client(host: str, port: int, ident: str, tls: MqttTls | None, **kw: object) -> aiomqtt.Client:
    return aiomqtt.Client(
        host,
        port,
        identifier=ident,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls_context(tls),
        **kw,  # type: ignore[arg-type]
    )


def _publisher(client: aiomqtt.Client | None) -> Publish:
    """A QoS 1 publish carrying the request/response properties, on ``client``."""

    async def publish(topic: str, payload: bytes, response: str | None, corr: bytes | None) -> None:
        if client is None:
            raise aiomqtt.MqttError("no site broker connection")
        await client.publish(topic, payload, qos=1, properties=publish_properties(response, corr))

    return publish


class RemoteAgent:
    """``await RemoteAgent(...).run()``: presence and commands until cancelled."""

    def __init__(
        self,
        gateway_id: str,
        outbox: Outbox,
        uplink: UplinkSettings,
        site: SiteBrokerSettings | None,
        settings: RemoteSettings | None = None,
        journal: CommandJournal | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.uplink = uplink
        self.site = site
        self.settings = settings or RemoteSettings()
        self.since_us = _now_us()
        self.status_topic = gateway_status_topic(gateway_id)
        self.journal = journal
        self.commands = GatewayCommands(
            gateway_id, site.site if site else None, self._dead_letter, journal
        )
        self.connected = asyncio.Event()
        self.relayed = 0
        self.dead_lettered = 0
        self._results_due = asyncio.Event()

    def close(self) -> None:
        """Close the command journal (the gateway closes the outbox)."""
        if self.journal is not None:
            self.journal.close()

    async def run(self) -> None:
        """Stay connected to both brokers, reconnecting after a back-off, until cancelled."""
        while True:
            try:
                await self._session()
            except* aiomqtt.MqttError as group:
                self.connected.clear()
                log.warning("remote channel lost (%s); reconnecting", group.exceptions[0])
            await asyncio.sleep(self.settings.reconnect_backoff_s)

    async def _session(self) -> None:
        will = offline(
            PresenceKind.GATEWAY,
            self.gateway_id,
            _now_us(),
            self.since_us,
            PresenceReason.LAST_WILL,
        )
        ident = f"vigil-gateway-{self.gateway_id}-remote"
        u = self.uplink
        up = _client(
            u.host,
            u.port,
            ident,
            u.tls,
            will=aiomqtt.Will(self.status_topic, will.encode(), qos=1, retain=True),
        )
        async with contextlib.AsyncExitStack() as stack:
            uplink = await stack.enter_async_context(up)
            site_client = None
            if self.site is not None:
                s = self.site
                site_id = f"{ident}-site"
                site_client = await stack.enter_async_context(
                    _client(s.host, s.port, site_id, s.tls)
                )
            try:
                await self._serve(uplink, site_client)
            except asyncio.CancelledError:
                await self._goodbye(uplink)
                raise

    async def _serve(self, uplink: aiomqtt.Client, site: aiomqtt.Client | None) -> None:
        status = online(PresenceKind.GATEWAY, self.gateway_id, _now_us(), self.since_us)
        await uplink.publish(self.status_topic, status.encode(), qos=1, retain=True)
        await uplink.subscribe(command_subscription(self.gateway_id), qos=1)
        if site is not None and self.site is not None:
            await site.subscribe(equipment_status_subscription(self.site.site), qos=1)
            await site.subscribe(equipment_reply_topic(self.site.site, self.gateway_id), qos=1)
        self.connected.set()
        self._results_due.set()
        log.info("remote channel up for gateway %s", self.gateway_id)
        tasks = [
            self._uplink_messages(uplink, site),
            self._send_results(uplink),
            self._timeouts(),
        ]
        if site is not None:
            tasks.append(self._site_messages(site, uplink))
        await supervise(*tasks)

    async def _goodbye(self, uplink: aiomqtt.Client) -> None:
        """A clean stop says so, so that it is not taken for a crash."""
        goodbye = self._offline(PresenceReason.SHUTDOWN)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2.0):
                await uplink.publish(self.status_topic, goodbye.encode(), qos=1, retain=True)

    async def _uplink_messages(self, uplink: aiomqtt.Client, site: aiomqtt.Client | None) -> None:
        async for message in uplink.messages:
            topic = str(message.topic)
            if not is_command_topic(topic, self.gateway_id):
                continue
            response_topic, _ = request_properties(message)

            async def publish_site(
                t: str,
                p: bytes,
                r: str | None,
                c: bytes | None,
                client: aiomqtt.Client | None = site,
            ) -> None:
                assert client is not None
                await client.publish(t, p, qos=1, properties=publish_properties(r, c))

            await self.commands.on_request(
                topic, payload_bytes(message), response_topic, publish_site
            )
            self._results_due.set()

    async def _site_messages(self, site: aiomqtt.Client, uplink: aiomqtt.Client) -> None:
        assert self.site is not None
        replies = equipment_reply_topic(self.site.site, self.gateway_id)
        async for message in site.messages:
            topic, payload = str(message.topic), payload_bytes(message)
            if topic == replies:
                _, correlation = request_properties(message)
                await self.commands.on_reply(topic, payload, correlation)
                self._results_due.set()
            elif (device_id := device_from_equipment_status_topic(topic)) is not None:
                await self._relay_status(uplink, topic, device_id, payload)

    async def _relay_status(
        self, uplink: aiomqtt.Client, topic: str, device_id: str, payload: bytes
    ) -> None:
        """Forward one equipment status upstream, retained, if it is what it claims."""
        if not payload:
            return  # a retained status cleared on the site broker
        try:
            status = decode_presence(payload)
            if status.kind is not PresenceKind.EQUIPMENT or status.id != device_id:
                raise ContractError(f"status of {status.kind} {status.id!r} on {device_id}'s topic")
        except ContractError as exc:
            await self._dead_letter(topic, str(exc), payload)
            return
        upstream = relayed_status_topic(self.gateway_id, device_id)
        await uplink.publish(upstream, status.encode(), qos=1, retain=True)
        self.relayed += 1

    async def _send_results(self, uplink: aiomqtt.Client) -> None:
        while True:
            await self._results_due.wait()
            self._results_due.clear()
            await self.commands.send_results(_publisher(uplink))

    async def _timeouts(self) -> None:
        while True:
            await asyncio.sleep(self.settings.timeout_tick_s)
            if self.commands.expire_overdue():
                self._results_due.set()

    def _offline(self, reason: PresenceReason) -> PresenceStatus:
        return offline(PresenceKind.GATEWAY, self.gateway_id, _now_us(), self.since_us, reason)

    async def _dead_letter(self, topic: str, reason: str, payload: bytes) -> None:
        self.dead_lettered += 1
        log.warning("remote channel dead-lettered a message on %s: %s", topic, reason)
        letter = Letter(_now_us(), topic, reason, payload)
        await asyncio.to_thread(self.outbox.dead_letter_many, [letter])
