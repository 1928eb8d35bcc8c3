"""Patches of one wound: first readings, supersession and the wound's current patch.

A device whose registry entry names a ``patient`` and a ``wound`` belongs to that wound. Its
patches are ordered by first accepted reading (then device id); each is *retired* at the first
reading of the next one, and the newest is the wound's current patch. Only the current patch
feeds the wound's history (trends, baselines, learnt offsets, kept on the wound's anchor
series); a retired patch's readings from its retirement on are not evaluated and its active
alerts clear (the engine does that, ``RuleEngine._retire``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from rules.context import I64, NOT_RETIRED, EngineState, Idx


@dataclass(frozen=True, slots=True)
class Retirement:
    """A patch superseded at ``at_us`` by a newer patch of the same wound."""

    device: int
    at_us: int
    by_device: int


def admit(ctx: EngineState, devices: Idx, first: I64) -> list[Retirement]:
    """Record new devices' first readings; returns the patches they newly supersede."""
    ctx.dev["first_ts"][devices] = first
    if len(first):
        ctx.newest_first = max(ctx.newest_first, int(first.max()))
    wound = ctx.dev_x["wound"][devices]
    touched = sorted({int(w) for w in wound[wound >= 0].tolist()})
    for d, w in zip(devices.tolist(), wound.tolist(), strict=True):
        if w >= 0:
            ctx.wound_members.setdefault(int(w), []).append(int(d))
    out: list[Retirement] = []
    for w in touched:
        out += _order(ctx, w)
    return out


def _order(ctx: EngineState, w: int) -> list[Retirement]:
    """Re-order a wound's patches; retire each at the next one's first reading."""
    first = ctx.dev["first_ts"]
    ids = ctx.devices.ids
    members = sorted(ctx.wound_members[w], key=lambda d: (int(first[d]), ids[d]))
    retired = ctx.dev["retired_at"]
    out = []
    for a, b in itertools.pairwise(members):
        at = int(first[b])
        if at < int(retired[a]):
            if int(retired[a]) == NOT_RETIRED:
                out.append(Retirement(a, at, b))
            retired[a] = at
            ctx.any_retired = True
    ctx.wound_current[w] = members[-1]
    for d in members:
        for s in ctx.table["series"][d].tolist():
            if s >= 0:
                _place(ctx, s)
    return out


def assign(ctx: EngineState, ids: Idx) -> None:
    """Owners and current flags of new series."""
    wound = ctx.dev_x["wound"][ctx.series["dev"][ids]]
    alone = ids[wound < 0]  # no wound: its own history, always current
    ctx.series_x["owner"][alone] = alone
    ctx.series_x["current"][alone] = True
    for s in ids[wound >= 0].tolist():
        _place(ctx, s)


def _place(ctx: EngineState, s: int) -> None:
    """A series' owner (its wound's anchor, or itself) and whether its patch is current."""
    d = int(ctx.series["dev"][s])
    w = int(ctx.dev_x["wound"][d])
    if w < 0:
        ctx.series_x["owner"][s] = s
        ctx.series_x["current"][s] = True
        return
    code = int(ctx.series["metric"][s])
    # The lowest index: stable once evaluated (later series get higher ones), and what a
    # restore, placing series in index order, finds again.
    old = ctx.anchors.get((w, code), s)
    anchor = min(old, s)
    ctx.anchors[(w, code)] = anchor
    owner = ctx.series_x["owner"]
    if anchor != old:  # only while both are new, before anything was evaluated
        owner[np.flatnonzero(owner[: ctx.n_series] == old)] = anchor
    owner[s] = anchor
    current = ctx.wound_current.get(w, d) == d
    ctx.series_x["current"][s] = current
    if current:
        ctx.wound_series[(w, code)] = s
    elif ctx.wound_series.get((w, code)) == s:
        del ctx.wound_series[(w, code)]  # the newest patch has no such series yet


def rebuild(ctx: EngineState) -> None:
    """Derived wound state from the device and series arrays (after a restore)."""
    ctx.anchors.clear()
    ctx.wound_series.clear()
    ctx.wound_members.clear()
    ctx.wound_current.clear()
    n = ctx.n_dev
    first = ctx.dev["first_ts"][:n]
    ctx.newest_first = int(first.max()) if n else 0
    wound = ctx.dev_x["wound"][:n]
    for d in np.flatnonzero((wound >= 0) & (first > 0)).tolist():
        ctx.wound_members.setdefault(int(wound[d]), []).append(d)
    ids = ctx.devices.ids
    for w, members in ctx.wound_members.items():
        ctx.wound_current[w] = max(members, key=lambda d: (int(first[d]), ids[d]))
    ctx.any_retired = bool(np.any(ctx.dev["retired_at"][:n] != NOT_RETIRED))
    assign(ctx, np.arange(ctx.n_series))


def reference_series(ctx: EngineState, s: Idx, code: int) -> Idx:
    """Per series: the current series of its device's reference wound (-1: none)."""
    ref_w = ctx.dev_x["ref_wound"][ctx.series["dev"][s]]
    out = np.full(len(s), -1, dtype=np.intp)
    for i in np.flatnonzero(ref_w >= 0).tolist():
        out[i] = ctx.wound_series.get((int(ref_w[i]), code), -1)
    return out
