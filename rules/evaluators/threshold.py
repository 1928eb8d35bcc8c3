"""Threshold and sustained rules (and battery_low, which the loader expands to a threshold)."""

from __future__ import annotations

from rules.evaluators.base import SignalEvaluator


class ThresholdEvaluator(SignalEvaluator):
    """The signal is the reading's value; ``sustained`` differs only by its raise duration."""
