"""Presence and gateway health as the API shows them: the device file, /devices/…/presence and
/gateways/… answer with the same views."""

from __future__ import annotations

from service.api.schemas import GatewayView, PresenceView
from service.presence_model import PresenceRecord
from service.store import ServiceStore


def presence_view(record: PresenceRecord, now_us: int) -> PresenceView:
    """``record`` with its uptime at ``now_us``."""
    return PresenceView(**record.model_dump(), uptime_s=record.uptime_at(now_us))


def gateway_view(store: ServiceStore, gateway_id: str, now_us: int) -> GatewayView | None:
    """The gateway's presence and latest health summary; None if it never reported either."""
    record = store.presence(gateway_id)
    health = store.gateway_health(gateway_id)
    if record is None and health is None:
        return None
    presence = None if record is None else presence_view(record, now_us)
    return GatewayView(gateway_id=gateway_id, presence=presence, health=health)
