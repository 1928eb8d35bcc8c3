"""Learnt baselines: the median of bucket means over a span, per owner, learnt once.

Learning starts at the owner's first reading fed to it (readings inside a patch's exclusion
window after application are never fed; a reading stamped before the start is not learnt).
The span is cut into buckets of ``res`` from that start; at the first reading at or after the
span's end the baseline closes: the median of the non-empty buckets' means if at least
``min_coverage`` of them hold readings, else learning starts over at that reading.
"""

from __future__ import annotations

import numpy as np

from rules.context import F64, I64, Idx
from rules.evaluators.buckets import bucket_statistic
from rules.runs import as_index
from rules.state import Arrays


class Learner:
    """One learnt value per owner (a wound's anchor series, or a series)."""

    def __init__(
        self, state: Arrays, prefix: str, span_us: int, res_us: int, min_coverage: float
    ) -> None:
        self.state = state
        self.prefix = prefix
        self.span = span_us
        self.res = res_us
        self.width = span_us // res_us
        self.min_coverage = min_coverage
        state.add(prefix + "start", np.int64, -1)
        state.add(prefix + "sum", np.float64, 0.0, width=self.width)
        state.add(prefix + "n", np.float64, 0.0, width=self.width)
        state.add(prefix + "value", np.float64, np.nan)
        state.add(prefix + "ready", np.bool_, False)

    def value(self) -> F64:
        """Every owner's learnt value (NaN until learnt)."""
        arr: F64 = self.state[self.prefix + "value"]
        return arr

    def all_ready(self, o: Idx) -> bool:
        """Whether every given owner has learnt its value."""
        return bool(self.state[self.prefix + "ready"][o].all())

    def feed(self, o: Idx, t: I64, v: F64) -> None:
        """Learn from readings (owners unique); closes spans that have ended."""
        st, p = self.state, self.prefix
        ready = st[p + "ready"][as_index(o)]
        if ready.any():
            todo = np.flatnonzero(~ready)
            if len(todo) == 0:
                return
            o, t, v = o[todo], t[todo], v[todo]
        start = st[p + "start"][o]
        start = np.where(start < 0, t, start)
        ended = t >= start + self.span
        if ended.any():
            rows = o[ended]
            stat = bucket_statistic(
                st[p + "sum"][rows], st[p + "n"][rows], "median", self.min_coverage
            )
            ok = ~np.isnan(stat)
            st[p + "value"][rows[ok]] = stat[ok]
            st[p + "ready"][rows[ok]] = True
            again = rows[~ok]  # too little data: start over at this reading
            st[p + "sum"][again] = 0.0
            st[p + "n"][again] = 0.0
            start[np.flatnonzero(ended)[~ok]] = t[ended][~ok]
        st[p + "start"][o] = start
        # (a reading stamped before the start, from a newer patch overlapping the old, is not)
        learning = np.flatnonzero((t >= start) & (t < start + self.span))
        flat = o[learning] * self.width + (t[learning] - start[learning]) // self.res
        st[p + "sum"].reshape(-1)[flat] += v[learning]
        st[p + "n"].reshape(-1)[flat] += 1.0
