"""Time buckets per owner (a series, or a wound's anchor series): the multi-resolution windows.

A bucket of width ``res`` holds the readings with ``ts // res == key`` (aligned to the epoch):
their count, sum and whatever else a rule adds up. Each owner has one *open* bucket (its newest
reading's) and a ring of ``slots`` completed buckets before it, slot ``key % slots``; rolling
to a newer key commits the open bucket and empties the slots of the keys skipped. A reading
stamped in a bucket older than the open one is not added. All of it is fixed-size numpy arrays,
updated for many owners at once; an owner appears at most once per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rules.context import F64, I64, Bool, Idx
from rules.runs import as_index
from rules.state import Arrays

NO_KEY = np.iinfo(np.int64).min  # no open bucket yet


class Buckets:
    """Open bucket and a ring of completed ones per owner, for the named sums."""

    def __init__(
        self, state: Arrays, prefix: str, fields: Sequence[str], slots: int, res_us: int
    ) -> None:
        self.state = state
        self.prefix = prefix
        self.fields = tuple(fields)
        self.slots = slots
        self.res = res_us
        state.add(prefix + "key", np.int64, NO_KEY)
        for f in self.fields:
            state.add(prefix + "cur_" + f, np.float64, 0.0)
            if slots:
                state.add(prefix + "ring_" + f, np.float64, 0.0, width=slots)

    def cur(self, field: str) -> F64:
        """The open buckets' sums of ``field`` (all owners)."""
        arr: F64 = self.state[self.prefix + "cur_" + field]
        return arr

    def ring(self, field: str) -> F64:
        """The completed buckets' sums of ``field``, ``(owners, slots)``."""
        arr: F64 = self.state[self.prefix + "ring_" + field]
        return arr

    def open_key(self) -> I64:
        """Every owner's open bucket key."""
        arr: I64 = self.state[self.prefix + "key"]
        return arr

    def roll(self, o: Idx, t: I64, totals: Mapping[str, F64] | None = None) -> tuple[Idx, Bool]:
        """Move owners to the buckets of ``t`` where those begin (commit, empty skipped slots).

        Returns the positions (into ``o``) that rolled, and where ``t`` falls in the open
        bucket (older readings are not added). ``totals`` (per owner, per field): sums over the
        completed buckets, kept up to date: the committed bucket joins, the buckets that leave
        the window leave; re-summed exactly once per ring turn (staggered by owner).
        """
        key = t // self.res
        open_ = self.open_key()[as_index(o)]  # a view for a run: read before rolling writes
        rolled = np.flatnonzero(key > open_)
        inside: Bool = key >= open_
        if len(rolled):
            self._roll(o[rolled], key[rolled], open_[rolled], totals)
        return rolled, inside

    def add(self, o: Idx, values: Mapping[str, F64 | float]) -> None:
        """Add to the open buckets of owners ``o`` (rolled already); a number adds to each."""
        at = as_index(o)
        for f in self.fields:
            self.cur(f)[at] += values[f]

    def feed(self, o: Idx, t: I64, values: Mapping[str, F64 | float]) -> tuple[Idx, Bool]:
        """Roll, then add the readings that fall in their owner's open bucket."""
        rolled, inside = self.roll(o, t)
        if inside.all():
            self.add(o, values)
        else:
            kept = {f: v if isinstance(v, float) else v[inside] for f, v in values.items()}
            self.add(o[inside], kept)
        return rolled, inside

    def _roll(self, o: Idx, new: I64, old: I64, totals: Mapping[str, F64] | None = None) -> None:
        """Commit the open buckets and empty the slots of skipped keys."""
        m = self.slots
        if m and self._roll_run(o, new, old, totals):
            return
        if m and totals is not None:
            self._roll_totals(o, new, old, totals)
        elif m:
            fresh = old == NO_KEY
            big = fresh | (new - np.where(fresh, new, old) > m)
            small = np.flatnonzero(~big)
            cleared = o[big]
            os, ks = o[small], old[small]
            gap = new[small] - ks
            longest = int(gap.max()) if len(gap) else 1
            for f in self.fields:
                ring = self.ring(f)
                if len(cleared):
                    ring[cleared] = 0.0
                for d in range(1, longest):  # keys skipped between the old and new bucket
                    sel = gap > d
                    ring[os[sel], (ks[sel] + d) % m] = 0.0
                ring[os, ks % m] = self.cur(f)[os]
        for f in self.fields:
            self.cur(f)[o] = 0.0
        self.open_key()[o] = new

    def _roll_run(self, o: Idx, new: I64, old: I64, totals: Mapping[str, F64] | None) -> bool:
        """The lock-step case with slices: consecutive rows moving from one key to the next.

        (A fleet reporting steadily rolls every owner of a metric into the same next bucket at
        once; their rows are dense.) Returns False, doing nothing, in any other case.
        """
        n = len(o)
        k0 = int(old[0])
        a = int(o[0])
        if k0 == NO_KEY or int(o[-1]) - a != n - 1 or not bool((old == k0).all()):
            return False
        if not bool((new == k0 + 1).all()) or not bool((np.diff(o) == 1).all()):
            return False
        m, slot, rows = self.slots, k0 % self.slots, slice(a, a + n)
        first = a + ((k0 + 1 - a) % m)  # rows re-summed this turn: (key % m) == (row % m)
        for f in self.fields:
            ring, cur = self.ring(f), self.cur(f)
            joined = cur[rows]
            if totals is not None:
                tot = totals[f]
                tot[rows] += joined - ring[rows, slot]  # the committed bucket takes the oldest's
                ring[rows, slot] = joined
                tot[first : a + n : m] = ring[first : a + n : m].sum(axis=1)
            else:
                ring[rows, slot] = joined
            cur[rows] = 0.0
        self.open_key()[rows] = k0 + 1
        return True

    def _roll_totals(self, o: Idx, new: I64, old: I64, totals: Mapping[str, F64]) -> None:
        """``_roll`` keeping completed totals: what joins minus what leaves the window."""
        m = self.slots
        fresh = old == NO_KEY
        big = fresh | (new - np.where(fresh, new, old) > m)
        small = np.flatnonzero(~big)
        cleared = o[big]
        os, ks = o[small], old[small]
        gap = new[small] - ks
        longest = int(gap.max()) if len(gap) else 1
        resum = os[new[small] % m == os % m]  # once per ring turn, staggered by owner
        for f in self.fields:
            ring, tot = self.ring(f), totals[f]
            if len(cleared):
                ring[cleared] = 0.0
                tot[cleared] = 0.0  # everything left the window
            joined = self.cur(f)[os]
            tot[os] += joined - ring[os, ks % m]  # the committed bucket takes the oldest's slot
            ring[os, ks % m] = joined
            for d in range(1, longest):  # keys skipped between the old and new bucket
                sel = gap > d
                rows, slot = os[sel], (ks[sel] + d) % m
                tot[rows] -= ring[rows, slot]
                ring[rows, slot] = 0.0
            if len(resum):
                tot[resum] = ring[resum].sum(axis=1)

    def window(self, o: Idx, field: str, first: int, count: int) -> F64:
        """``(len(o), count)`` completed sums starting ``first`` slots back (oldest first).

        ``first = slots`` starts at the oldest completed bucket; the newest is 1 slot back. The
        whole ring comes in slot order (a median or a sum does not need key order); otherwise
        owners usually share their open key (buckets are aligned to the epoch), so the columns
        are picked once rather than per element.
        """
        m = self.slots
        ring = self.ring(field)
        if first == count == m:
            whole: F64 = rows_of(ring, o)
            return whole
        key = self.open_key()[o]
        if len(key) and bool((key == key[0]).all()):
            cols = (int(key[0]) - first + np.arange(count)) % m
            same: F64 = np.take(rows_of(ring, o), cols, axis=1)
            return same
        cols2 = (key[:, None] - first + np.arange(count)) % m
        out: F64 = ring[o[:, None], cols2]
        return out

    def totals(self, o: Idx, field: str) -> F64:
        """Sums over every completed bucket of owners ``o``.

        In slot order, not key order: equal to a sum oldest first up to float rounding, and
        exactly whenever the sums are exact (as for counts, and the property tests' values).
        """
        if not self.slots:
            return np.zeros(len(o))
        out: F64 = self.ring(field)[o].sum(axis=1)
        return out


def rows_of(arr: F64, o: Idx) -> F64:
    """``arr[o]``, as a view without a copy when ``o`` is a run of consecutive rows (the usual
    case: a metric's rows are dense and a lock-step fleet reads them in order)."""
    out: F64 = arr[as_index(o)]
    return out


def sequential_sum(block: F64) -> F64:
    """Row sums added left to right, oldest first: the order a plain ``sum()`` adds them in."""
    if block.shape[1] == 0:
        return np.zeros(block.shape[0])
    out: F64 = np.cumsum(block, axis=1)[:, -1]
    return out


def bucket_statistic(sums: F64, counts: F64, statistic: str, min_coverage: float) -> F64:
    """Per row: the median of bucket means, or the mean of all readings; NaN below coverage."""
    width = sums.shape[1]
    filled = np.count_nonzero(counts > 0, axis=1)
    if statistic == "median" and width and bool((filled == width).all()):
        return _median_of_full(sums / counts)  # every bucket holds readings: the usual case
    if statistic == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = sequential_sum(sums) / sequential_sum(counts)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(counts > 0, sums / counts, np.nan)
        ordered = np.sort(means, axis=1)  # NaN sorts last
        rows = np.arange(len(ordered))
        low = ordered[rows, np.maximum(filled - 1, 0) // 2]
        high = ordered[rows, np.minimum(filled // 2, width - 1)]
        stat = (low + high) / 2
    ok = (filled > 0) & (filled / width >= min_coverage)
    out: F64 = np.where(ok, stat, np.nan)
    return out


def _median_of_full(means: F64) -> F64:
    """Per row, the median of its values (none missing)."""
    ordered = np.sort(means, axis=1)
    half = means.shape[1] // 2
    if means.shape[1] % 2:
        odd: F64 = ordered[:, half]
        return odd
    even: F64 = (ordered[:, half - 1] + ordered[:, half]) / 2
    return even
