"""The engine snapshot codec: all evaluation state as an ``np.savez`` blob (no pickle), and back.

Metric codes are saved with their names so that a catalog that grew or reordered still loads;
a rule whose definition changed (its fingerprint) starts from fresh state. Derived state (scope
masks, window sums, busy flags) is never saved: the engine rebuilds it after ``load``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rules.context import EngineState, EngineStats, device_level

# 2: rings of metrics without window rules hold only readings inside a sustain run
# ("full_ring_metrics" lists the others); version 1 snapshots still load.
# 3: devices' first readings and retirements (wounds), bucketed windows, learnt baselines,
# confirmation and composite timers; arrays an older snapshot lacks start at their fill value.
SNAPSHOT_VERSION = 3
Data = Any  # an open np.load archive: name -> array


def encode(ctx: EngineState) -> bytes:
    """All evaluation state of ``ctx`` as bytes."""
    arrays: dict[str, NDArray[Any]] = {
        "meta": np.array(
            [SNAPSHOT_VERSION, ctx.window_capacity, ctx.n_dev, ctx.n_series], dtype=np.int64
        ),
        "stats": np.array(list(asdict(ctx.stats).values()), dtype=np.int64),
        "device_ids": np.array(ctx.devices.ids[: ctx.n_dev], dtype=np.str_),
        "metric_names": np.array(ctx.names, dtype=np.str_),
        "ring_metrics": ctx.metric_mask_names(ctx.ring_metric),
        "full_ring_metrics": ctx.metric_mask_names(ctx.full_ring),
    }
    arrays.update(ctx.dev.dump("dev:", ctx.n_dev))
    arrays.update(ctx.series.dump("series:", ctx.n_series))
    arrays.update(ctx.ring.dump("series:", ctx.n_series))
    for rule in ctx.rules:
        size = ctx.n_dev if device_level(rule) else ctx.n_series
        arrays[f"rule:{rule.id}:fingerprint"] = np.array(rule.model_dump_json())
        arrays.update(ctx.state[rule.id].dump(f"rule:{rule.id}:", size))
        if rule.id in ctx.mstate:
            code, dense = ctx.mstate[rule.id]
            arrays.update(dense.dump(f"mrule:{rule.id}:", int(ctx.metric_rows[code])))
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


@contextlib.contextmanager
def opened(blob: bytes) -> Iterator[tuple[int, Data]]:
    """The window capacity a snapshot was taken with, and its arrays; ValueError if unusable."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        version, capacity = (int(x) for x in data["meta"][:2])
        if version not in (1, 2, SNAPSHOT_VERSION):
            raise ValueError(f"snapshot version {version} is not {SNAPSHOT_VERSION}")
        yield capacity, data


def load(ctx: EngineState, data: Data) -> None:
    """Fill a fresh ``ctx`` (made for the snapshot's capacity) from an ``opened`` snapshot."""
    _, _, n_dev, n_series = (int(x) for x in data["meta"])
    ctx.stats = EngineStats(*(int(x) for x in data["stats"]))
    for device_id in data["device_ids"].tolist():
        ctx.devices.intern(str(device_id))
    ctx.sync_devices()
    ctx.dev.load("dev:", data, n_dev)
    ctx.series.load("series:", data, n_series)
    ctx.ring.load("series:", data, n_series)
    ctx.ensure_series(n_series)
    ctx.n_series = n_series
    _remap_metrics(ctx, [str(m) for m in data["metric_names"].tolist()])
    ctx.metric_rows[:] = 0
    ctx.assign_rows(np.arange(n_series))
    # Older snapshots kept every ring; otherwise only the metrics listed had one.
    kept = set(ctx.names)
    if "ring_metrics" in data:
        kept = {str(m) for m in data["ring_metrics"].tolist()}
    # Version 1 rings held every reading; later only the listed metrics' rings do.
    full = (
        {str(m) for m in data["full_ring_metrics"].tolist()}
        if "full_ring_metrics" in data
        else kept
    )
    _drop_stale_rings(ctx, kept, full)
    for rule in ctx.rules:
        key = f"rule:{rule.id}:fingerprint"
        size = n_dev if device_level(rule) else n_series
        state = ctx.state[rule.id]
        state.ensure(size)
        if key in data and str(data[key]) == rule.model_dump_json():
            state.load(f"rule:{rule.id}:", data, size)
            if rule.id in ctx.mstate:
                code, dense = ctx.mstate[rule.id]
                dense.load(f"mrule:{rule.id}:", data, int(ctx.metric_rows[code]))
        ctx.n_active[rule.id] = int(np.count_nonzero(state["active"][:size]))
    ctx.clock = int(ctx.series["last_ts"][:n_series].max()) if n_series else 0


def _remap_metrics(ctx: EngineState, saved_names: list[str]) -> None:
    """Translate saved metric codes to this catalog's and rebuild the series table."""
    n = ctx.n_series
    missing = set(saved_names) - set(ctx.codes)
    if missing:
        raise ValueError(f"snapshot has metrics no longer in the catalog: {sorted(missing)}")
    codes = np.array([ctx.codes[name] for name in saved_names], dtype=np.int8)
    metric = ctx.series["metric"]
    metric[:n] = codes[metric[:n]]
    ctx.table["series"][ctx.series["dev"][:n], metric[:n]] = np.arange(n)


def _drop_stale_rings(ctx: EngineState, kept: set[str], full: set[str]) -> None:
    """Empty rings that cannot serve now: no ring then, or a partial one now read in full."""
    n = ctx.n_series
    stale = np.array(
        [
            name not in (full if ctx.full_ring[code] else kept)
            for code, name in enumerate(ctx.names)
        ],
        dtype=np.bool_,
    )
    metric = ctx.series["metric"][:n]
    rows = np.flatnonzero(stale[metric] & ctx.ring_metric[metric])
    ctx.ring.clear(rows)
    ctx.series["ring_head"][rows] = 0
