"""The gateway's own health upstream: fault alerts, and a periodic retained summary.

Faults (a source that died, a deaf scanner, an untrusted clock, …) become alert events about the
gateway itself (``device_id`` = gateway id, ``rule_id`` ``gateway.…``), raised and cleared once
per episode. Each transition is committed in the outbox with its event, as the overflow alarm
does, so an alert raised just before the process exits is published after the restart. The
summary (``contract.health``) goes out every ``every_s`` on ``vigil/v1/gateways/<id>/health``,
retained, over the uplink's own connection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import aiomqtt

from contract import AlertEvent, AlertTransition, Severity
from contract.health import BleHealth, ClockHealth, GatewayHealth, health_topic
from gateway.outbox import AlarmState, Outbox
from infra.time_us import now_us

log = logging.getLogger(__name__)

SOURCE_FAILED = "gateway.source_failed"
BLE_PREFIX = "gateway.ble."


@runtime_checkable
class FaultLike(Protocol):
    """What a source's fault report carries (``gateway.ble.faults.FaultReport``)."""

    raised: bool
    message: str
    evidence: dict[str, Any]

    @property
    def fault(self) -> Any:
        """The fault; its ``value`` names it."""


@runtime_checkable
class FaultingSource(Protocol):
    """A source that raises gateway faults (the BLE acquisition's ``faults``)."""

    faults: Any  # gateway.ble.faults.Faults: ``sink``, ``active``, ``names()``


@runtime_checkable
class HealthSource(Protocol):
    """A source that summarises its health (the BLE acquisition)."""

    def health(self) -> BleHealth:
        """The source's part of the health message."""
        ...

    def clock_health(self) -> ClockHealth:
        """Whether its clock may stamp readings."""
        ...


class HealthAlarms:
    """Alert events about the gateway itself, durable in the outbox until published."""

    def __init__(self, outbox: Outbox, wake: Callable[[], None]) -> None:
        self.outbox = outbox
        self._wake = wake
        self._lock = threading.Lock()

    def active(self, rule_id: str) -> bool:
        """Whether ``rule_id`` is raised (as stored: it survives restarts)."""
        return self.outbox.alarm(rule_id).active

    def report(
        self,
        rule_id: str,
        raised: bool,
        message: str,
        evidence: dict[str, Any] | None = None,
        severity: Severity = Severity.WARNING,
    ) -> AlertEvent | None:
        """Queue a raise or a clear if it changes the stored state; the event, else None."""
        with self._lock:
            state = self.outbox.alarm(rule_id)
            if state.active == raised:
                return None
            event = AlertEvent(
                device_id=self.outbox.gateway_id,
                rule_id=rule_id,
                severity=severity,
                transition=AlertTransition.RAISED if raised else AlertTransition.CLEARED,
                at_us=now_us(),
                message=message,
                evidence=_jsonable(evidence or {}),
            )
            self.outbox.queue_alert(rule_id, AlarmState(raised, state.mark), event.encode())
        log.log(
            logging.ERROR if raised else logging.INFO,
            "gateway alert %s %s: %s",
            rule_id,
            event.transition.value,
            message,
        )
        self._wake()
        return event

    def source_fault(self, report: FaultLike) -> None:
        """A source's fault transition, as ``gateway.ble.<fault>`` (the sink BLE reports to)."""
        name = str(getattr(report.fault, "value", report.fault))
        severity = Severity.CRITICAL if name == "all_patches_silent" else Severity.WARNING
        self.report(BLE_PREFIX + name, report.raised, report.message, report.evidence, severity)

    def raised_rules(self, rules: Sequence[str]) -> list[str]:
        """Which of ``rules`` are raised now."""
        return [r for r in rules if self.active(r)]


class HealthReporter:
    """Builds the health summary and publishes it periodically over the uplink's client."""

    def __init__(
        self,
        outbox: Outbox,
        sources: Sequence[object],
        alarms: HealthAlarms,
        every_s: float,
        rules: Callable[[], list[str]],
    ) -> None:
        self.outbox = outbox
        self.sources = sources
        self.alarms = alarms
        self.every_s = every_s
        self._rules = rules
        self.started = time.monotonic()
        self.published = 0

    def snapshot(self) -> GatewayHealth:
        """The gateway's health now (reads the outbox: call off the event loop)."""
        ble: BleHealth | None = None
        clock: ClockHealth | None = None
        for source in self.sources:
            if isinstance(source, HealthSource):
                ble, clock = source.health(), source.clock_health()
                break
        return GatewayHealth(
            gateway_id=self.outbox.gateway_id,
            at_us=now_us(),
            uptime_s=round(time.monotonic() - self.started, 1),
            outbox_pending=self.outbox.stats().pending_readings,
            faults=self.alarms.raised_rules(self._rules()),
            clock=clock,
            ble=ble,
        )

    async def publish(self, client: aiomqtt.Client) -> None:
        """Publish a summary now and every ``every_s`` (retained, QoS 1) until cancelled."""
        topic = health_topic(self.outbox.gateway_id)
        while True:
            try:
                health = await asyncio.to_thread(self.snapshot)
            except Exception:  # a summary bug must not take the uplink down
                log.exception("could not build the gateway health summary")
            else:
                await client.publish(topic, health.encode(), qos=1, retain=True)
                self.published += 1
            await asyncio.sleep(self.every_s)


def _jsonable(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence with anything JSON cannot carry turned into text."""
    return {
        k: v if isinstance(v, str | int | float | bool) or v is None else repr(v)
        for k, v in evidence.items()
    }
