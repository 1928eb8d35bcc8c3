"""MQTT 5 request/response properties (Response Topic, Correlation Data, Message Expiry).

paho keeps PUBLISH properties as attributes named after the spec's property names
(``ResponseTopic``, ``CorrelationData``, ``MessageExpiryInterval``); an unset one is absent.
"""

from __future__ import annotations

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def publish_properties(
    response_topic: str | None = None,
    correlation: bytes | None = None,
    expiry_s: int | None = None,
) -> Properties:
    """PUBLISH properties with whichever of the three are given."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    if expiry_s is not None:
        props.MessageExpiryInterval = max(1, expiry_s)
    return props


def request_properties(message: aiomqtt.Message) -> tuple[str | None, bytes | None]:
    """A message's (Response Topic, Correlation Data), each None when absent or malformed."""
    props = message.properties
    topic = getattr(props, "ResponseTopic", None) if props is not None else None
    data = getattr(props, "CorrelationData", None) if props is not None else None
    return (
        topic if isinstance(topic, str) else None,
        bytes(data) if isinstance(data, bytes | bytearray) else None,
    )
