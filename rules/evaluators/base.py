"""What every value-driven rule shares: its signal is tested with hysteresis and sustain timers.

An evaluator computes its kind's signal per reading (``signal``); ``prepare`` and ``step`` then
run the same raise/clear hysteresis for every kind and emit events with ring evidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contract.alert import AlertEvent, AlertTransition
from rules.context import F64, I64, Bool, EngineState, Idx
from rules.evidence import evidence_span, signal_event, window_start
from rules.model import SignalRule
from rules.signals import disjoint, test
from rules.state import Arrays

RAISED, CLEARED = AlertTransition.RAISED, AlertTransition.CLEARED
# rows that can change, their signal, their raise test, and where the clear is forced (or None)
Prepared = tuple[Idx, F64, Bool, Bool | None]


class SignalEvaluator:
    """Hysteresis over one rule's signal on the series of its metric."""

    def __init__(self, rule: SignalRule, ctx: EngineState) -> None:
        self.rule = rule
        self.ctx = ctx
        self.code = ctx.codes[rule.metric]
        # Raw-window kinds read every recent reading from the ring (and show it as evidence).
        self.window = evidence_span(rule) > 0
        # With disjoint raise/clear tests the clear timer only matters while active (the raising
        # reading fails the clear test and resets it), so at-rest series can be skipped.
        self.track_clear = not disjoint(rule.raise_, rule.clear)
        # Set by ``signal`` where the clear test passes whatever the signal (e.g. a stale
        # reference), aligned with its readings; None when nothing is forced.
        self.forced: Bool | None = None
        self.state = ctx.state[rule.id]
        self.state.add("raise_since", np.int64, -1)
        self.state.add("clear_since", np.int64, -1)
        self.state.add("pending", np.int64, -1)  # confirmation: when the raise first held
        self.add_state(self.state)
        self.derived = Arrays()  # rebuilt from state and rings on restore, never snapshotted
        self.derived.add("busy", np.bool_, False)  # active, a timer running, or confirming
        self.n_busy = 0  # how many series are busy: none (the usual case) skips their lookup
        self.add_derived(self.derived)
        ctx.derived[rule.id] = self.derived

    @property
    def needs_ring(self) -> bool:
        """Whether evidence can reach back past the current reading (so the metric needs a ring).

        Evidence is the ring from the sustain start; with no durations and disjoint tests that
        is always just the current reading.
        """
        rule = self.rule
        timed = rule.raise_.for_us or rule.clear.for_us or rule.confirm
        return self.window or bool(timed) or self.track_clear

    def add_state(self, state: Arrays) -> None:
        """Declare the kind's own snapshotted per-series arrays."""

    def add_derived(self, derived: Arrays) -> None:
        """Declare the kind's own derived per-series arrays."""

    def signal(self, s: Idx, t: I64, v: F64, head: Idx | None) -> F64:
        """The rule's signal at each reading (``head``: its ring slot, for window kinds)."""
        return v

    def extra(self, s: int, t: int) -> dict[str, Any]:
        """Kind-specific evidence for an event on series ``s`` at ``t``."""
        return {}

    def learnt_baseline(self, s: Idx) -> tuple[F64, F64] | None:
        """For a rule comparing with a learnt baseline: each series' baseline and the value it
        is compared with now (NaN: not known yet); None for every other rule."""
        return None

    def transitioned(self, raised: Idx, cleared: Idx) -> None:
        """Series ``raised`` became active and ``cleared`` inactive (after their events)."""

    def on_new_series(self, ids: Idx) -> None:
        """Series ``ids`` have just appeared (or been restored)."""

    def rebuild(self, ids: Idx) -> None:
        """Recompute derived arrays of series ``ids`` from state and rings (after a restore)."""
        st = self.state
        busy = st["active"][ids] | (st["raise_since"][ids] >= 0) | (st["pending"][ids] >= 0)
        if self.track_clear:
            busy |= st["clear_since"][ids] >= 0
        self.derived["busy"][ids] = busy
        self.n_busy = int(np.count_nonzero(self.derived["busy"]))

    def reset(self, s: Idx) -> None:
        """Forget the hysteresis of series ``s`` (their patch was superseded)."""
        st = self.state
        st["active"][s] = False
        st["raise_since"][s] = -1
        st["clear_since"][s] = -1
        st["pending"][s] = -1
        self._set_busy(s, np.zeros(len(s), dtype=np.bool_))

    def prepare(self, s: Idx, t: I64, v: F64, head: Idx | None) -> Prepared | None:
        """The signal; the readings whose step can change something, None if none."""
        if len(s) == 0:
            return None
        self.ctx.stats.evaluations += len(s)
        self.forced = None
        signal = self.signal(s, t, v, head)
        rule = self.rule
        r_on = test(rule.raise_, signal)
        # (``work`` may be ``r_on`` itself: or-ed into anew below, never in place)
        work = r_on | self.derived["busy"][s] if self.n_busy else r_on
        if self.track_clear:
            work = work | test(rule.clear, signal)
            if self.forced is not None:
                work |= self.forced
        rows = np.flatnonzero(work)
        if len(rows) == 0:
            return None  # at rest and not raising: nothing can change
        forced = None if self.forced is None else self.forced[rows]
        return rows, signal[rows], r_on[rows], forced

    def step(
        self,
        s: Idx,
        t: I64,
        v: F64,
        prepared: Prepared,
        events: list[AlertEvent],
    ) -> None:
        """Step the hysteresis of the prepared rows (with their signal and raise test)."""
        rows, signal, r_on, forced = prepared
        s, t = s[rows], t[rows]
        rule = self.rule
        c_on = test(rule.clear, signal)
        if forced is not None:
            c_on |= forced
        state = self.state
        r_since = _since(state["raise_since"], s, t, r_on)
        c_since = _since(state["clear_since"], s, t, c_on)
        r_held = r_on & (t - r_since >= rule.raise_.for_us)
        c_held = c_on & (t - c_since >= rule.clear.for_us)
        was = state["active"][s]
        started = r_since
        if rule.confirm:
            pend = np.where(c_held, -1, state["pending"][s])
            pend = np.where(r_held & (pend < 0), t, pend)
            fire = r_held & (pend >= 0) & (t - pend >= rule.confirm)
            started = np.where(fire, pend, r_since)
            state["pending"][s] = pend = np.where(was | fire, -1, pend)
            r_held = fire
        now = np.where(was, ~c_held, r_held)
        state["active"][s] = now
        busy = now | (r_since >= 0)
        if rule.confirm:
            busy |= pend >= 0
        if self.track_clear:
            busy |= c_since >= 0
        self._set_busy(s, busy)
        changed = np.flatnonzero(was != now)
        if len(changed) == 0:
            return
        for i in changed.tolist():
            raised = bool(now[i])
            since = int(started[i]) if raised else int(c_since[i])
            self.ctx.n_active[rule.id] += 1 if raised else -1
            at = int(t[i])
            window = self._evidence(int(s[i]), at, float(v[rows[i]]), since)
            device_id = self.ctx.device_id(int(s[i]))
            transition = RAISED if raised else CLEARED
            extra = self.extra(int(s[i]), at)
            events.append(
                signal_event(rule, device_id, transition, at, float(signal[i]), window, extra)
            )
        up = now[changed]
        self.transitioned(s[changed[up]], s[changed[~up]])

    def _set_busy(self, s: Idx, busy: Bool) -> None:
        """Mark series ``s`` (each at most once) busy or not, keeping the count."""
        flags = self.derived["busy"]
        self.n_busy += int(np.count_nonzero(busy)) - int(np.count_nonzero(flags[s]))
        flags[s] = busy

    def _evidence(self, s: int, t: int, value: float, since: int) -> list[tuple[int, float]]:
        """The ring readings from the sustain start (or the rule's window) up to ``t``."""
        ctx = self.ctx
        if not ctx.ring_metric[self.code]:
            return [(t, value)]  # no durations: the run starts at this reading
        cap = ctx.window_capacity
        order = (int(ctx.series["ring_head"][s]) + np.arange(cap)) % cap
        ts = ctx.ring.ts[order, s]
        vals = ctx.ring.val[order, s]
        keep = (ts >= window_start(self.rule, t, since)) & (ts <= t)
        return list(zip(ts[keep].tolist(), vals[keep].tolist(), strict=True))


def _since(since_arr: I64, s: Idx, t: I64, on: Bool) -> I64:
    """Update and return when each condition's current true-run started (-1 when false)."""
    since = since_arr[s]
    since = np.where(on, np.where(since < 0, t, since), -1)
    since_arr[s] = since
    return since
