"""MQTT topic names shared by the simulator, gateway, ingest, rules and service."""

from __future__ import annotations

UPLINK_PREFIX = "vigil/v1/gateways"
EQUIPMENT_PREFIX = "site"
ALERTS_PREFIX = "vigil/v1/alerts"
NOTIFICATIONS_PREFIX = "vigil/v1/notifications"


def batch_topic(gateway_id: str) -> str:
    """Where a gateway publishes its batches upstream."""
    return f"{UPLINK_PREFIX}/{gateway_id}/batches"


def confirm_topic(gateway_id: str) -> str:
    """Where ingest confirms a gateway's batches as stored; the gateway subscribes to it."""
    return f"{UPLINK_PREFIX}/{gateway_id}/confirms"


def batch_subscription(shared_group: str | None = None) -> str:
    """What ingest subscribes to; a group name makes it an MQTT v5 shared subscription."""
    topic = f"{UPLINK_PREFIX}/+/batches"
    return f"$share/{shared_group}/{topic}" if shared_group else topic


def equipment_topic(site: str, device_id: str) -> str:
    """Where one piece of equipment publishes telemetry on its site broker."""
    return f"{EQUIPMENT_PREFIX}/{site}/equipment/{device_id}/telemetry"


def equipment_subscription(site: str) -> str:
    """What a gateway subscribes to on its site broker to bridge all equipment."""
    return f"{EQUIPMENT_PREFIX}/{site}/equipment/+/telemetry"


def alert_topic(device_id: str) -> str:
    """Where alerts about one device are published."""
    return f"{ALERTS_PREFIX}/{device_id}"


def alert_subscription() -> str:
    """What the service worker subscribes to: alerts about every device."""
    return f"{ALERTS_PREFIX}/+"


def notification_topic(role: str, subject: str) -> str:
    """Where notifications for one recipient go, e.g. ``…/engineer/e1``."""
    return f"{NOTIFICATIONS_PREFIX}/{role}/{subject}"


def device_id_from_equipment_topic(topic: str) -> str | None:
    """The device id an equipment telemetry topic names, or None if it is not such a topic."""
    parts = topic.split("/")
    if (
        len(parts) == 5
        and parts[0] == EQUIPMENT_PREFIX
        and parts[2] == "equipment"
        and parts[4] == "telemetry"
        and parts[1]
        and parts[3]
    ):
        return parts[3]
    return None
