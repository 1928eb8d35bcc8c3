"""Rate rules: change per hour between the oldest reading inside ``window`` and this one."""

from __future__ import annotations

from rules.context import F64, I64, Idx
from rules.evaluators.window import WindowEvaluator
from rules.model import RateRule
from rules.signals import rate_of


class RateEvaluator(WindowEvaluator):
    """The signal is the slope from the window's oldest reading; it keeps no sums."""

    rule: RateRule

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """Change per hour since the oldest ring reading inside the window."""
        assert head is not None  # window rules always have a ring
        ctx = self.ctx
        cap = ctx.window_capacity
        ring_ts, ring_val = ctx.ring.flat()
        n = self.derived["n"][s]
        n += 1
        n[n > cap] = cap  # no sums to keep: the push simply evicted the oldest
        self.evict(s, head, n, t - self.rule.window, 1, _nothing)
        oldest = (head - n + 1) % cap * ctx.ring.capacity + s
        signal = rate_of(v, t, ring_val[oldest], ring_ts[oldest], self.rule.min_span)
        self.derived["n"][s] = n
        return signal


def _nothing(rows: Idx, tail: Idx) -> None:
    """Rate windows have no sums to adjust."""
