"""The reading policy: which readings of a batch the rules evaluate, and in what order.

Per series the engine remembers the last accepted timestamp. A reading is

* **out of window** when it is stamped too far ahead: after ``now_us + max_skew`` when the
  batch's arrival time is known, else after the engine clock (the newest accepted reading of
  any series) ``+ max_jump``, and never later than ``latest_us`` (year 2200). Accepting it would
  move the series' clock (and ring) to that time, and every real reading after it would be late:
  one bad timestamp would switch the series' alerting off. Dropped, counted;
* **late** when older than the series' last accepted timestamp: dropped, counted;
* a **duplicate** when stamped like the last accepted reading, or like an earlier reading of the
  series in the batch: the first wins, the rest are dropped and counted;
* **invalid** when its value is NaN or infinite: not a reading at all (the catalog's ranges keep
  such values out at the edge; the engine must not depend on it). Dropped, counted.

A far-past reading cannot move a series' clock backwards: it is late (or, on a new series, its
first reading, superseded by the next).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from rules.columns import Columns
from rules.context import F64, I64, NEVER, Bool, EngineState, EngineStats, Idx
from rules.runs import as_index

US_PER_S = 1_000_000
LATEST_US = 7_258_118_400 * US_PER_S  # 2200-01-01T00:00:00Z: no real reading is later


@dataclass(frozen=True, slots=True)
class ReadingPolicy:
    """How far ahead of the clock a reading may be stamped and still be evaluated."""

    # Ahead of the batch's arrival time (the wall clock): device and gateway clock error.
    max_skew_us: int = 15 * 60 * US_PER_S
    # Ahead of the newest accepted reading when there is no arrival time (replays, data-clock
    # simulations): a batch may span hours of data, and a whole fleet may have been quiet.
    max_jump_us: int = 7 * 24 * 3600 * US_PER_S
    latest_us: int = LATEST_US

    def bound(self, clock_us: int, now_us: int | None) -> int:
        """The latest timestamp accepted in a batch arriving at ``now_us`` (None: unknown)."""
        if now_us is not None:
            return min(self.latest_us, now_us + self.max_skew_us)
        if clock_us > 0:
            return min(self.latest_us, clock_us + self.max_jump_us)
        return self.latest_us


def within_window(cols: Columns, bound: int, stats: EngineStats) -> Columns:
    """``cols`` without readings stamped after ``bound`` (out of window) or not finite."""
    ahead = cols.ts_us > bound
    finite = np.isfinite(cols.value)
    if not ahead.any() and finite.all():
        return cols
    keep = ~ahead
    stats.dropped_out_of_window += len(cols) - int(np.count_nonzero(keep))
    invalid = keep & ~finite
    stats.dropped_invalid += int(np.count_nonzero(invalid))
    keep &= finite
    return Columns(cols.device[keep], cols.metric[keep], cols.value[keep], cols.ts_us[keep])


@dataclass
class Run:
    """A stretch of a batch with strictly increasing series, after the policy."""

    s: Idx
    t: I64
    v: F64
    codes: Idx
    keep: Bool  # accepted by the policy
    first: Bool  # no earlier accepted reading of the series in the batch

    def select(self, keep: Bool) -> None:
        """Keep only the accepted readings."""
        self.s, self.t, self.v = self.s[keep], self.t[keep], self.v[keep]
        self.codes, self.first = self.codes[keep], self.first[keep]


def run_starts(series: Idx) -> Idx:
    """Where each run of strictly increasing series starts (always 0 first)."""
    breaks = np.flatnonzero(series[1:] <= series[:-1])
    starts: Idx = np.empty(len(breaks) + 1, dtype=np.intp)
    starts[0] = 0
    np.add(breaks, 1, out=starts[1:])
    return starts


def each_once(series: Idx, n_series: int) -> bool:
    """Whether no series appears twice; cheap when the batch is in series order."""
    if len(series) <= 1 or bool(np.all(series[1:] > series[:-1])):
        return True
    return bool(np.bincount(series, minlength=n_series).max() <= 1)


def once_order(series: Idx, n_series: int) -> Idx:
    """The order putting ``series`` (each at most once) in increasing order.

    A batch as large as a good share of the fleet is placed, in linear time (a scatter and a
    compress over the fleet's series), instead of sorted; a small one is sorted.
    """
    if len(series) * 16 < n_series:
        return np.argsort(series)
    at = np.full(n_series, -1, dtype=np.intp)
    at[series] = np.arange(len(series))
    order: Idx = at[at >= 0]
    return order


def series_time_order(series: Idx, ts: I64) -> Idx:
    """A stable order by (series, ts), skipping the full sort when each series is in order."""
    n = len(series)
    bits = max(1, n.bit_length())
    if int(series.max()) < (1 << (62 - bits)):
        # series and position packed into one unique key: a fast unstable sort is stable
        order: Idx = np.argsort((series << bits) | np.arange(n))
    else:  # pragma: no cover - beyond 2**40 series
        order = np.argsort(series, kind="stable")
    s, t = series[order], ts[order]
    if bool(np.all((s[1:] != s[:-1]) | (t[1:] >= t[:-1]))):
        return order
    order = np.lexsort((ts, series))
    return order


def _count(stats: EngineStats, n: int, n_keep: int, n_late: int) -> None:
    stats.dropped_late += n_late
    stats.dropped_duplicate += n - n_keep - n_late
    stats.accepted += n_keep


def accept_unique(
    ctx: EngineState, s: Idx, t: I64, v: F64, codes: Idx
) -> tuple[Idx, I64, F64, Idx]:
    """Policy for a batch with at most one reading per series."""
    last = ctx.series["last_ts"][as_index(s)]  # a view for a run: nothing writes it here
    keep = t > last
    n_keep = int(np.count_nonzero(keep))
    if n_keep < len(s):
        _count(ctx.stats, len(s), n_keep, int(np.count_nonzero(t < last)))
        return s[keep], t[keep], v[keep], codes[keep]
    ctx.stats.accepted += n_keep
    return s, t, v, codes


def accept_runs(
    ctx: EngineState, s: Idx, t: I64, v: F64, codes: Idx, starts: Idx
) -> list[Run] | None:
    """Policy for a batch of runs of increasing series; None if a series goes back in time.

    When every series' readings are in time order along the batch, comparing each reading
    with the larger of the stored last timestamp and the series' previous reading in the
    batch is the policy of the sorted order: an earlier reading that was dropped is never
    later than what it was compared with.
    """
    seen = ctx.scratch["seen_ts"]
    stored = ctx.series["last_ts"]
    bounds = [*starts.tolist(), len(s)]
    runs: list[Run] = []
    ok = True
    for lo, hi in itertools.pairwise(bounds):
        rs, rt = s[lo:hi], t[lo:hi]
        prev = seen[rs]
        if bool(np.any(rt < prev)):
            ok = False
            break
        seen[rs] = rt
        last = stored[rs]
        keep = rt > np.maximum(prev, last)
        # a series had an accepted reading earlier in the batch iff its previous one is newer
        # than the stored timestamp (the first such reading was accepted)
        runs.append(Run(rs, rt, v[lo:hi], codes[lo:hi], keep, prev <= last))
    seen[s] = NEVER
    if not ok:
        return None
    for run in runs:
        n_keep = int(np.count_nonzero(run.keep))
        if n_keep < len(run.s):
            _count(ctx.stats, len(run.s), n_keep, int(np.count_nonzero(run.t < stored[run.s])))
            run.select(run.keep)
        else:
            ctx.stats.accepted += n_keep
    return runs


def accept_sorted(
    ctx: EngineState, s: Idx, t: I64, v: F64, codes: Idx
) -> tuple[Idx, I64, F64, Idx, Idx]:
    """Policy for a batch ordered by (series, ts); also each reading's rank in its series."""
    last = ctx.series["last_ts"][s]
    late = t < last
    repeat = np.zeros(len(s), dtype=np.bool_)
    repeat[1:] = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    dup = ~late & ((t == last) | repeat)
    keep = ~(late | dup)
    ctx.stats.dropped_late += int(np.count_nonzero(late))
    ctx.stats.dropped_duplicate += int(np.count_nonzero(dup))
    s, t, v, codes = s[keep], t[keep], v[keep], codes[keep]
    ctx.stats.accepted += len(s)
    first = np.ones(len(s), dtype=np.bool_)
    first[1:] = s[1:] != s[:-1]
    positions = np.arange(len(s))
    rank: Idx = positions - np.maximum.accumulate(np.where(first, positions, 0))
    return s, t, v, codes, rank
