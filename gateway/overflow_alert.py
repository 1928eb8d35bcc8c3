"""Raises (and clears) an alert when the outbox bound forces readings out: never silent.

The alarm is state-based, not edge-based: ``check`` compares the durable drop counter with the
count the alarm last saw, so drops committed just before a crash still raise the alert after
the restart. Each transition is committed together with its queued event, and the uplink
publishes queued events (QoS 1) as soon as the broker is reachable.
"""

from __future__ import annotations

import threading
import time

from contract import AlertEvent, AlertTransition, Severity
from gateway.outbox import AlarmState, Outbox

RULE_ID = "gateway.outbox_overflow"


class OverflowAlarm:
    """Turns the outbox's drop counter and backlog into raised/cleared alert events."""

    def __init__(self, outbox: Outbox, clear_ratio: float = 0.8) -> None:
        self.outbox = outbox
        self.clear_ratio = clear_ratio
        # Appends and acks run on different threads; one decision at a time.
        self._lock = threading.Lock()
        self.active = outbox.alarm(RULE_ID).active

    def check(self) -> AlertEvent | None:
        """Queue a transition if one is due and return its event, else None."""
        with self._lock:
            stats = self.outbox.stats()
            state = self.outbox.alarm(RULE_ID)
            if not state.active and stats.dropped_readings > state.mark:
                transition = AlertTransition.RAISED
                message = "outbox bound reached: the oldest readings are being dropped"
            elif state.active and stats.pending_readings < self.clear_ratio * stats.bound_readings:
                transition = AlertTransition.CLEARED
                message = "outbox backlog back below the clear level"
            else:
                return None
            event = AlertEvent(
                device_id=self.outbox.gateway_id,
                rule_id=RULE_ID,
                severity=Severity.WARNING,
                transition=transition,
                at_us=time.time_ns() // 1000,
                message=message,
                evidence={
                    "dropped": stats.dropped_readings,
                    "dropped_since_last_alert": stats.dropped_readings - state.mark,
                    "bound": stats.bound_readings,
                    "pending": stats.pending_readings,
                    "clear_below": int(self.clear_ratio * stats.bound_readings),
                },
            )
            new_state = AlarmState(transition == AlertTransition.RAISED, stats.dropped_readings)
            self.outbox.queue_alert(RULE_ID, new_state, event.encode())
            self.active = new_state.active
            return event
