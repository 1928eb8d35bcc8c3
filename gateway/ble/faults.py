"""Gateway faults the BLE source raises and clears: each reported once per episode.

A fault is about the gateway, not a patient: a scanner that will not start, an adapter that
hears nothing, no adapter at all, every patch silent at once, a clock that cannot stamp readings.
The gateway turns each transition into a ``gateway.ble.<fault>`` alert event upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class Fault(StrEnum):
    """What can be wrong with the gateway's BLE side."""

    SCANNER_FAILING = "scanner_failing"  # an adapter's scanner does not start
    SCANNER_SILENT = "scanner_silent"  # an adapter scans but hears nothing (watchdog)
    ADAPTER_MISSING = "adapter_missing"  # BlueZ shows no adapter
    ALL_PATCHES_SILENT = "all_patches_silent"  # every paired patch went quiet at once
    CLOCK_UNTRUSTED = "clock_untrusted"  # readings are held until the clock is trusted


@dataclass(frozen=True, slots=True)
class FaultReport:
    """One transition: raised or cleared, with what the gateway knows."""

    fault: Fault
    raised: bool
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


FaultSink = Callable[[FaultReport], None]


class Faults:
    """The faults up now; ``sink`` hears each raise and clear once."""

    def __init__(self, sink: FaultSink | None = None) -> None:
        self.sink = sink
        self.active: dict[Fault, FaultReport] = {}
        self.history: list[FaultReport] = []  # every transition, for tests and diagnostics

    def raise_(self, fault: Fault, message: str, **evidence: Any) -> bool:
        """Raise ``fault`` unless it is up already; True if it was new."""
        if fault in self.active:
            return False
        report = FaultReport(fault, True, message, evidence)
        self.active[fault] = report
        log.error("BLE fault %s: %s", fault.value, message)
        self._emit(report)
        return True

    def clear(self, fault: Fault, message: str, **evidence: Any) -> bool:
        """Clear ``fault`` if it is up; True if it was."""
        if self.active.pop(fault, None) is None:
            return False
        log.warning("BLE fault %s cleared: %s", fault.value, message)
        self._emit(FaultReport(fault, False, message, evidence))
        return True

    @staticmethod
    def names() -> list[str]:
        """Every fault this source can raise."""
        return [f.value for f in Fault]

    def raised(self, fault: Fault) -> int:
        """How often ``fault`` was raised so far."""
        return sum(1 for r in self.history if r.fault is fault and r.raised)

    def _emit(self, report: FaultReport) -> None:
        self.history.append(report)
        if len(self.history) > 1000:
            del self.history[:500]
        if self.sink is not None:
            try:
                self.sink(report)
            except Exception:  # a broken observer must not take the BLE source down
                log.exception("the fault sink failed on %s", report.fault.value)
