"""One evaluator per rule kind; ``signal_evaluator`` picks the one for a value-driven rule.

``battery_low`` has none of its own: the loader expands it to a threshold rule.
"""

from __future__ import annotations

from rules.context import EngineState
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.composite import CompositeEvaluator, device_active
from rules.evaluators.delta import BaselineEvaluator, ReferenceEvaluator
from rules.evaluators.rate import RateEvaluator
from rules.evaluators.repeating import RepeatingEvaluator
from rules.evaluators.silence import SilenceEvaluator
from rules.evaluators.threshold import ThresholdEvaluator
from rules.evaluators.zscore import ZScoreEvaluator
from rules.model import (
    DeltaBaselineRule,
    DeltaReferenceRule,
    RateRule,
    RepeatingRule,
    SignalRule,
    ThresholdRule,
    ZScoreRule,
)

__all__ = [
    "CompositeEvaluator",
    "SignalEvaluator",
    "SilenceEvaluator",
    "device_active",
    "signal_evaluator",
]


def signal_evaluator(rule: SignalRule, ctx: EngineState) -> SignalEvaluator:
    """The evaluator of a value-driven rule's kind."""
    if isinstance(rule, ThresholdRule):
        return ThresholdEvaluator(rule, ctx)
    if isinstance(rule, RepeatingRule):
        return RepeatingEvaluator(rule, ctx)
    if isinstance(rule, RateRule):
        return RateEvaluator(rule, ctx)
    if isinstance(rule, ZScoreRule):
        return ZScoreEvaluator(rule, ctx)
    if isinstance(rule, DeltaBaselineRule):
        return BaselineEvaluator(rule, ctx)
    assert isinstance(rule, DeltaReferenceRule)
    return ReferenceEvaluator(rule, ctx)
