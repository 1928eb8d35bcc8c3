"""Presence and gateway health as the service keeps them, for the device file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from contract.presence import PresenceKind, PresenceReason, PresenceState, PresenceStatus

OFFLINE_RULE = "presence.offline"


class PresenceRecord(BaseModel):
    """The latest presence of one gateway or piece of equipment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject_id: str
    kind: PresenceKind
    gateway_id: str  # the gateway itself, or the one relaying the equipment's status
    state: PresenceState
    reason: PresenceReason
    changed_at_us: int  # when the service saw the state change
    online_since_us: int | None = None  # the current (or last) session's start
    last_online_us: int | None = None  # last instant known online
    alert_raised: bool = False  # an offline alert is out and not yet cleared
    status: PresenceStatus  # the message the state came from

    def uptime_at(self, now_us: int) -> float | None:
        """Seconds online in the current session, None while offline."""
        if self.state is not PresenceState.ONLINE or self.online_since_us is None:
            return None
        return max(0.0, (now_us - self.online_since_us) / 1e6)
