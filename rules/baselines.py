"""The wounds' learnt baselines, out of the engine and into the readings store as they change.

A trend rule against the wound's own baseline (``dressing.temp.rise``: the 1 h median against
a 24 h baseline) knows, for every patch, how far the wound sits above its normal long before
it raises anything. People should see that too (the ward board's Δ column). ``learnt`` reads
it out of the engine, vectorised over the rule's series; ``BaselineExport`` remembers what
was written and hands over only what changed since: a baseline once learnt, then the recent
value at each bucket close (every 15 minutes a patch), not every patch every time.

Each row is stamped with the time of the newest reading behind it, and rewritten at least once
a day of readings while its patch reports (``REFRESH_US``), so that the store can prune the
rows of patches that stopped reporting (removed, superseded by a new dressing) by that stamp
alone (``[retention] baselines_days``); a restart rewrites rows with the same stamps, so it
does not make a silent patch's row look fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from contract import WoundBaseline
from rules.context import F64, I64, EngineState, Idx
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
    seen_us: I64  # the time of each one's newest reading


def learnt(ctx: EngineState, evaluators: Iterable[SignalEvaluator]) -> list[LearntBaselines]:
    """Every learnt baseline of every rule comparing with one (devices in their scope)."""
    found: list[LearntBaselines] = []
    metric = ctx.series["metric"][: ctx.n_series]
    dev = ctx.series["dev"][: ctx.n_series]
    last_ts = ctx.series["last_ts"]
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
                ev.rule.id,
                ev.rule.metric,
                dev[s[known]],
                baseline[known],
                current[known],
                last_ts[s[known]],
            )
        )
    return found


# A row is rewritten, even unchanged, once its patch has reported for this long since (an
# engineering default: far inside any retention of days, one write a patch a day).
REFRESH_US = 86_400 * 1_000_000


@dataclass
class BaselineExport:
    """What was last written per rule (by device index), to write only what changed."""

    # rule id -> (baseline, current, stamp) as written, by device index
    _written: dict[str, tuple[F64, F64, I64]] = field(default_factory=dict)

    def changed(
        self, found: Iterable[LearntBaselines], ids: list[str], since_us: int
    ) -> list[WoundBaseline]:
        """The baselines differing from what was written, or written a day of readings ago,
        of series heard from ``since_us`` on (``ids``: device index → id); each stamped with
        its series' newest reading."""
        out: list[WoundBaseline] = []
        for rule in found:
            base, current, stamp = self._last(rule.rule_id, len(ids))
            d = rule.device
            moved = ~_same(base[d], rule.baseline) | ~_same(current[d], rule.current)
            moved |= rule.seen_us - stamp[d] >= REFRESH_US
            moved &= rule.seen_us >= since_us
            for i, b, c, at in zip(
                d[moved].tolist(),
                rule.baseline[moved].tolist(),
                rule.current[moved].tolist(),
                rule.seen_us[moved].tolist(),
                strict=True,
            ):
                out.append(WoundBaseline(ids[i], rule.rule_id, rule.metric, b, _known(c), at))
        return out

    def written(self, rows: Iterable[WoundBaseline], index: Callable[[str], int | None]) -> None:
        """Remember ``rows`` as stored (``index``: device id → its index)."""
        for row in rows:
            at = index(row.device_id)
            if at is None:
                continue
            base, current, stamp = self._last(row.rule_id, at + 1)
            base[at] = row.baseline
            current[at] = np.nan if row.current is None else row.current
            stamp[at] = row.at_us

    def _last(self, rule_id: str, size: int) -> tuple[F64, F64, I64]:
        empty = (np.empty(0), np.empty(0), np.empty(0, dtype=np.int64))
        base, current, stamp = self._written.get(rule_id, empty)
        if len(base) < size:
            more = max(size, 2 * len(base)) - len(base)
            base = np.concatenate([base, np.full(more, np.nan)])
            current = np.concatenate([current, np.full(more, np.nan)])
            # Never written: the NaN values differ from any learnt one, whatever the stamp.
            stamp = np.concatenate([stamp, np.zeros(more, dtype=np.int64)])
            self._written[rule_id] = (base, current, stamp)
        return base, current, stamp


def _same(a: F64, b: F64) -> np.ndarray:
    """Element-wise equal, NaN equal to NaN."""
    both_nan = np.isnan(a) & np.isnan(b)
    same: np.ndarray = (a == b) | both_nan
    return same


def _known(value: float) -> float | None:
    return None if value != value else value  # NaN: not known
