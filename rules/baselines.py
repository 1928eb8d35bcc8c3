"""The wounds' learnt baselines, out of the engine and into the readings store as they change.

A trend rule against the wound's own baseline (``dressing.temp.rise``: the 1 h median against
a 24 h baseline) knows, for every patch, how far the wound sits above its normal long before
it raises anything. People should see that too (the ward board's Δ column). ``learnt`` reads
it out of the engine, vectorised over the rule's series; ``BaselineExport`` remembers what
was written and hands over only what changed since: a baseline once learnt, then the recent
value at each bucket close (every 15 minutes a patch), not every patch every time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from contract import WoundBaseline
from rules.context import F64, EngineState, Idx
from rules.evaluators import SignalEvaluator


@runtime_checkable
class BaselineStore(Protocol):
    """Where the runtime writes baselines (the readings store)."""

    def store_baselines(self, baselines: Sequence[WoundBaseline]) -> None:
        """Keep the latest of each (device, rule)."""
        ...


@dataclass(frozen=True, slots=True)
class LearntBaselines:
    """One rule's learnt baselines: per device index, the baseline and the current value
    compared with it (NaN: not known now)."""

    rule_id: str
    metric: str
    device: Idx
    baseline: F64
    current: F64


def learnt(ctx: EngineState, evaluators: Iterable[SignalEvaluator]) -> list[LearntBaselines]:
    """Every learnt baseline of every rule comparing with one (devices in their scope)."""
    found: list[LearntBaselines] = []
    metric = ctx.series["metric"][: ctx.n_series]
    dev = ctx.series["dev"][: ctx.n_series]
    for ev in evaluators:
        s = np.flatnonzero(metric == ev.code)
        if ev.rule.id in ctx.filtered:
            s = s[ctx.scope[ev.rule.id][dev[s]]]
        pair = ev.learnt_baseline(s)
        if pair is None:
            continue
        baseline, current = pair
        known = ~np.isnan(baseline)
        found.append(
            LearntBaselines(
                ev.rule.id, ev.rule.metric, dev[s[known]], baseline[known], current[known]
            )
        )
    return found


@dataclass
class BaselineExport:
    """What was last written per rule (by device index), to write only what changed."""

    _written: dict[str, tuple[F64, F64]] = field(default_factory=dict)

    def changed(
        self, found: Iterable[LearntBaselines], ids: list[str], at_us: int
    ) -> list[WoundBaseline]:
        """The baselines differing from what was written (``ids``: device index → id)."""
        out: list[WoundBaseline] = []
        for rule in found:
            base, current = self._last(rule.rule_id, len(ids))
            d = rule.device
            moved = ~_same(base[d], rule.baseline) | ~_same(current[d], rule.current)
            for i, b, c in zip(
                d[moved].tolist(),
                rule.baseline[moved].tolist(),
                rule.current[moved].tolist(),
                strict=True,
            ):
                out.append(WoundBaseline(ids[i], rule.rule_id, rule.metric, b, _known(c), at_us))
        return out

    def written(self, rows: Iterable[WoundBaseline], index: Callable[[str], int | None]) -> None:
        """Remember ``rows`` as stored (``index``: device id → its index)."""
        for row in rows:
            at = index(row.device_id)
            if at is None:
                continue
            base, current = self._last(row.rule_id, at + 1)
            base[at] = row.baseline
            current[at] = np.nan if row.current is None else row.current

    def _last(self, rule_id: str, size: int) -> tuple[F64, F64]:
        base, current = self._written.get(rule_id, (np.empty(0), np.empty(0)))
        if len(base) < size:
            grown = max(size, 2 * len(base))
            base = np.concatenate([base, np.full(grown - len(base), np.nan)])
            current = np.concatenate([current, np.full(grown - len(current), np.nan)])
            self._written[rule_id] = (base, current)
        return base, current


def _same(a: F64, b: F64) -> np.ndarray:
    """Element-wise equal, NaN equal to NaN."""
    both_nan = np.isnan(a) & np.isnan(b)
    same: np.ndarray = (a == b) | both_nan
    return same


def _known(value: float) -> float | None:
    return None if value != value else value  # NaN: not known
