"""Whose history a reading belongs to, and whether it may feed it (shared by trend and deltas).

Fast paths keep a fleet without wounds (every series its own history, always current) and
without recently applied patches (nobody inside an exclusion window) to no work per reading.
"""

from __future__ import annotations

import numpy as np

from rules.context import F64, I64, Bool, EngineState, Idx


def owners(ctx: EngineState, s: Idx, history: str) -> Idx:
    """The series each reading's history lives on: its wound's anchor, or itself."""
    if history == "series" or not ctx.wound_members:
        return s
    out: Idx = ctx.series_x["owner"][s]
    return out


def unless_excluded(ctx: EngineState, s: Idx, values: F64, exclude: int) -> F64:
    """``values`` (one per series ``s``), NaN where the series' last reading lies in its patch's
    exclusion window: what a rule would compare is not known there."""
    out = excluded(ctx, s, ctx.series["last_ts"][s], exclude)
    if out is None:
        return values
    masked: F64 = np.where(out, np.nan, values)
    return masked


def excluded(ctx: EngineState, s: Idx, t: I64, exclude: int) -> Bool | None:
    """Readings inside their patch's exclusion window after its first reading (None: none).

    A reading stamped before its patch's first reading (sent late, in a later batch) is
    before the application: excluded too, also where the window is empty (as the reference
    has it; an ``exclude == 0`` shortcut here once let such readings feed the history).
    """
    if len(t) == 0 or int(t.min()) >= ctx.newest_first + exclude:
        return None
    out: Bool = t < ctx.dev["first_ts"][ctx.series["dev"][s]] + exclude
    return out


def feeding(ctx: EngineState, s: Idx, out: Bool | None) -> Idx | None:
    """Positions of the readings that feed their history (None: all of them).

    Only a wound's current patch feeds, and nothing inside an exclusion window.
    """
    if out is None and not ctx.wound_members:
        return None
    mask = np.ones(len(s), dtype=np.bool_) if out is None else ~out
    if ctx.wound_members:
        mask &= ctx.series_x["current"][s]
    return np.flatnonzero(mask)
