"""Persistent MQTT sessions whose QoS 1 messages are acknowledged only once handled.

Ingest, the rules worker and the service worker all consume this way.

aiomqtt 2 acknowledges on receipt and has no public manual-ack switch, but the paho client it
wraps does (``manual_ack_set``/``ack``). Acking after the commit is what makes a crash between
receipt and commit lose nothing: the broker redelivers, and storage deduplicates.
"""

from __future__ import annotations

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from infra.mqtt_tls import MqttTls, tls_context


def persistent_client(
    host: str,
    port: int,
    client_id: str,
    *,
    mqtt_v5: bool = True,
    session_expiry_s: int = 86_400,
    tls: MqttTls | None = None,
) -> aiomqtt.Client:
    """A client whose broker session (subscriptions, queued QoS 1 messages) outlives it."""
    context = tls_context(tls)
    if mqtt_v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
        return aiomqtt.Client(
            host,
            port,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            tls_context=context,
        )
    return aiomqtt.Client(
        host, port, identifier=client_id, clean_session=False, tls_context=context
    )


def _paho(client: aiomqtt.Client) -> paho.Client:
    return client._client


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Stop paho from acknowledging incoming QoS 1 messages by itself."""
    _paho(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK for a message we have durably handled."""
    if message.qos > 0:
        _paho(client).ack(message.mid, message.qos)
