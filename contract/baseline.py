"""A wound's learnt baseline and where its rule's signal stands against it, as the rules publish it.

The rules engine learns each wound's own baseline (e.g. the median of 15-minute means of wound
temperature over its first 24 h) and compares a recent statistic with it (the 1 h median). The
rules runtime writes both to the readings store as they change, so that people see how far a
wound sits above its own normal before any alert fires (the ward board's Δ column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WoundBaseline:
    """One device's baseline under one rule, and the value the rule compares with it now.

    ``current`` is None while the rule has no recent value (a gap longer than its window, or a
    patch still inside its exclusion window after application). ``at_us`` is the time of the
    newest reading behind it (the rules rewrite the row at least daily while the patch reports).
    """

    device_id: str
    rule_id: str
    metric: str
    baseline: float
    current: float | None
    at_us: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.baseline):
            raise ValueError(f"baseline of {self.device_id}/{self.rule_id} is not finite")
        if self.current is not None and not math.isfinite(self.current):
            raise ValueError(f"current value of {self.device_id}/{self.rule_id} is not finite")

    @property
    def delta(self) -> float | None:
        """How far the current value sits above the baseline (negative: below), or None."""
        return None if self.current is None else self.current - self.baseline
