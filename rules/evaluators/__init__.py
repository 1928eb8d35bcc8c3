"""One evaluator per rule kind; ``signal_evaluator`` picks the one for a value-driven rule.

``battery_low`` has none of its own: the loader expands it to a threshold rule.
"""

from __future__ import annotations

from rules.context import EngineState
from rules.evaluators.base import SignalEvaluator
from rules.evaluators.composite import CompositeEvaluator, Observed, device_active
from rules.evaluators.counting import ProportionEvaluator, RepeatingEvaluator, ZScoreEvaluator
from rules.evaluators.delta import BaselineEvaluator, ReferenceEvaluator
from rules.evaluators.rate import RateEvaluator
from rules.evaluators.silence import SilenceEvaluator
from rules.evaluators.smoothed import RollingEvaluator, TrendEvaluator
from rules.evaluators.threshold import ThresholdEvaluator
from rules.model import (
    DeltaBaselineRule,
    DeltaReferenceRule,
    ProportionRule,
    RateRule,
    RepeatingRule,
    RollingRule,
    SignalRule,
    ThresholdRule,
    TrendRule,
    ZScoreRule,
)

__all__ = [
    "CompositeEvaluator",
    "Observed",
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
    if isinstance(rule, ProportionRule):
        return ProportionEvaluator(rule, ctx)
    if isinstance(rule, RollingRule):
        return RollingEvaluator(rule, ctx)
    if isinstance(rule, TrendRule):
        return TrendEvaluator(rule, ctx)
    if isinstance(rule, RateRule):
        return RateEvaluator(rule, ctx)
    if isinstance(rule, ZScoreRule):
        return ZScoreEvaluator(rule, ctx)
    if isinstance(rule, DeltaBaselineRule):
        return BaselineEvaluator(rule, ctx)
    assert isinstance(rule, DeltaReferenceRule)
    return ReferenceEvaluator(rule, ctx)
