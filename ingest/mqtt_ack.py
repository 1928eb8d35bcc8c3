"""Acknowledge QoS 1 messages only after they are committed to storage.

aiomqtt 2 acknowledges on receipt and has no public manual-ack switch, but the paho client it
wraps does (``manual_ack_set``/``ack``). Acking after the commit is what makes a crash between
receipt and commit lose nothing: the broker redelivers, and storage deduplicates.
"""

from __future__ import annotations

import aiomqtt
import paho.mqtt.client as paho


def _paho(client: aiomqtt.Client) -> paho.Client:
    return client._client


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Stop paho from acknowledging incoming QoS 1 messages by itself."""
    _paho(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK for a message we have durably handled."""
    if message.qos > 0:
        _paho(client).ack(message.mid, message.qos)
