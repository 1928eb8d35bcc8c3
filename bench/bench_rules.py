"""Benchmark the vectorized rule engine against the reference loop in the same process.

100,000 series (patches: wound_ph, wound_temp, skin_temp, exudate, battery; equipment:
mains_voltage, ng_voltage, probe_health, error_code) with the dressing and equipment packs.
Prints reading-rule evaluations per second for both and their ratio. Single-threaded.

    .venv/bin/python bench/bench_rules.py [--series 100000] [--batches 20] [--depth 1] [--stagger]

``--stagger`` first gives each series 0-31 earlier readings so that the ring heads of the series
differ (as in a fleet whose devices report at different rates) instead of moving in lock step.

Every series first reports from three days before the timed batches (untimed warm-up): with
``--learning`` one reading then, so every patch is past its exclusion window but every baseline
and learnt offset is still learning during the timed batches (the first day of a fleet that all
started at once); by default a reading every 15 minutes for the day before, so the baselines are
learnt (the steady state of a fleet whose patients have been monitored for more than a day).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import numpy as np

from contract.batch_columns import ColumnarBatch, ReadingColumns
from contract.catalog import METRICS
from contract.reading import Reading
from rules import DeviceInfo, ReferenceEngine, RuleEngine, load_pack
from rules.columns import METRIC_CODES, Columns, DeviceTable
from rules.context import device_level
from rules.runtime import RuleRuntime, RuntimeSettings

PATCH_METRICS = ("wound_ph", "wound_temp", "skin_temp", "exudate", "battery")
EQUIPMENT_METRICS = ("mains_voltage", "ng_voltage", "probe_health", "error_code")
# (mean, spread): thresholds sit ~4 spreads out, so alerts are rare as in a real fleet
LEVELS = {
    "wound_ph": (7.0, 0.08),
    "wound_temp": (33.0, 0.5),
    "skin_temp": (33.5, 0.7),
    "exudate": (40.0, 12.0),
    "battery": (70.0, 12.0),
    "mains_voltage": (230.0, 5.0),
    "ng_voltage": (0.8, 0.3),
    "probe_health": (90.0, 2.0),
    "error_code": (0.0, 0.0),
}
T0 = 1_700_000_000_000_000
STEP_US = 60_000_000
GATEWAY_BATCH = 5_000  # readings per gateway batch (the uplink's batch_max_readings)


def fleet(n_series: int) -> tuple[list[str], list[str], dict[str, DeviceInfo]]:
    """Device ids and metrics per series, 60 % patch series and 40 % equipment series."""
    n_patches = (n_series * 6 // 10) // len(PATCH_METRICS)
    n_machines = (n_series - n_patches * len(PATCH_METRICS)) // len(EQUIPMENT_METRICS)
    registry: dict[str, DeviceInfo] = {}
    devices: list[str] = []
    metrics: list[str] = []
    for i in range(n_patches):
        pid = f"patch-{i}"
        registry[pid] = DeviceInfo(kind="patch", reference=f"patch-{i ^ 1}")
        devices += [pid] * len(PATCH_METRICS)
        metrics += PATCH_METRICS
    for i in range(n_machines):
        mid = f"us-{i}"
        registry[mid] = DeviceInfo(kind="ultrasound", model="US-1")
        devices += [mid] * len(EQUIPMENT_METRICS)
        metrics += EQUIPMENT_METRICS
    return devices, metrics, registry


def values(metrics: list[str], z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The next value per series: a slow AR(1) walk around each metric's level (updates z)."""
    z *= 0.98
    z += 0.2 * rng.standard_normal(len(z))
    out = np.empty(len(metrics))
    names = np.array(metrics)
    for metric, (mean, spread) in LEVELS.items():
        sel = names == metric
        if metric == "error_code":
            out[sel] = (rng.random(int(sel.sum())) < 0.002).astype(float)
        else:
            spec = METRICS[metric]
            out[sel] = np.clip(mean + spread * z[sel], spec.low, spec.high)
    return np.asarray(np.round(out * 4) / 4)


def batches(
    n_series: int, n_batches: int, depth: int, seed: int = 1
) -> tuple[list[str], list[str], dict[str, DeviceInfo], list[tuple[np.ndarray, ...]]]:
    """Batches of ``depth`` readings per series each, as (series, value, ts) arrays."""
    devices, metrics, registry = fleet(n_series)
    rng = np.random.default_rng(seed)
    n = len(devices)
    z = rng.standard_normal(n)
    out: list[tuple[np.ndarray, ...]] = []
    for b in range(n_batches):
        series = np.tile(np.arange(n), depth)
        ts = np.repeat(T0 + (b * depth + np.arange(depth)) * STEP_US, n)
        ts = ts + rng.integers(0, STEP_US // 2, len(ts))
        vals = np.concatenate([values(metrics, z, rng) for _ in range(depth)])
        out.append((series, vals, ts))
    return devices, metrics, registry, out


def applied(metrics: list[str], history: bool) -> list[tuple[np.ndarray, ...]]:
    """Untimed warm-up batches: one reading per series three days before ``T0`` and, with
    ``history``, one every 15 minutes through the last 26 h before it (baselines learnt)."""
    level = np.array([LEVELS[m][0] for m in metrics])
    n = len(metrics)
    day_us = 86_400 * 1_000_000
    stamps = [T0 - 3 * day_us]
    if history:
        stamps += [T0 - 26 * 3_600_000_000 + k * 900_000_000 for k in range(26 * 4)]
    rng = np.random.default_rng(3)
    return [
        (
            np.arange(n),
            np.round((level + 0.01 * rng.standard_normal(n)) * 4) / 4,
            np.full(n, ts, dtype=np.int64),
        )
        for ts in stamps
    ]


def staggered(metrics: list[str], seed: int = 2) -> tuple[np.ndarray, ...]:
    """One batch of 0-31 readings per series at each metric's level, before ``T0``."""
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 32, len(metrics))
    series = np.repeat(np.arange(len(metrics)), count)
    back = np.arange(len(series)) - np.repeat(np.cumsum(count) - count, count)
    ts = T0 - (count[series] - back) * STEP_US
    level = np.array([LEVELS[m][0] for m in metrics])
    return series, level[series], ts


@dataclass
class Measured:
    """Evaluations and seconds of one path over the timed batches."""

    evaluations: int = 0
    seconds: float = 0.0
    events: int = 0

    @property
    def rate(self) -> float:
        """Evaluations per second."""
        return self.evaluations / self.seconds


def run_engine(
    n_series: int, n_batches: int, depth: int, stagger: bool = False, learning: bool = False
) -> tuple[Measured, Measured, Measured, dict[str, float]]:
    """RuleEngine.process on pre-interned columns, RuleRuntime.on_stored (what ingest calls) on
    decoded wire batches, and process_readings on Reading objects (the path before issue 17),
    of the same stream, batch by batch in turn (same load)."""
    devices, metrics, registry, data = batches(n_series, n_batches + 2, depth)
    if stagger:
        data.insert(0, staggered(metrics))
    warm = applied(metrics, history=not learning)
    data[:0] = warm
    rules = load_pack("dressings") + load_pack("equipment")
    engine = RuleEngine(rules, registry)
    table: DeviceTable = engine.devices
    dev_idx = table.intern_many(devices)
    met_idx = np.array([METRIC_CODES[m] for m in metrics], dtype=np.intp)
    cols = [Columns(dev_idx[s], met_idx[s], v, t) for s, v, t in data]
    # The data clock: the stream's time is not now, as in a replay. No store or broker: alerts
    # are booked and the rest of their delivery is measured by bench_service.
    runtime = RuleRuntime(rules, registry, None, None, RuntimeSettings(data_clock=True))
    wire = [wire_batches(dev_idx, met_idx, table.ids, d) for d in data]
    objects = RuleEngine(rules, registry)
    objects.devices.intern_many(devices)  # same indices: its warm-up takes the same columns
    paths = Paths(engine, runtime, objects)
    return asyncio.run(_interleaved(paths, cols, wire, len(warm) + int(stagger) + 2))


@dataclass
class Paths:
    """The three ways of feeding the same stream: columns, the runtime, Reading objects."""

    engine: RuleEngine
    runtime: RuleRuntime
    objects: RuleEngine  # fed through process_readings, as on_stored did before issue 17


async def _interleaved(
    paths: Paths, cols: list[Columns], wire: list[list[ColumnarBatch]], untimed: int
) -> tuple[Measured, Measured, Measured, dict[str, float]]:
    """Feed every path every batch, timing each after the first ``untimed`` (warm-up)."""
    engine, runtime, objects = paths.engine, paths.runtime, paths.objects
    direct, through, readings = Measured(), Measured(), Measured()
    for k, (c, w) in enumerate(zip(cols, wire, strict=True)):
        before = engine.stats.evaluations, runtime.engine.stats.evaluations
        events = runtime.counters.events
        start = time.perf_counter()
        found = engine.process(c)
        middle = time.perf_counter()
        await runtime.on_stored(w)
        end = time.perf_counter()
        if k < untimed:
            objects.process(c)  # Reading objects for the warm-up would not fit in memory
            continue
        direct.evaluations += engine.stats.evaluations - before[0]
        direct.seconds += middle - start
        direct.events += len(found)
        through.evaluations += runtime.engine.stats.evaluations - before[1]
        through.seconds += end - middle
        through.events += runtime.counters.events - events
        batch = [r for b in w for r in b.columns.readings()]  # built untimed: ingest made them
        evaluated = objects.stats.evaluations
        start = time.perf_counter()
        readings.events += len(objects.process_readings(batch))
        readings.seconds += time.perf_counter() - start
        readings.evaluations += objects.stats.evaluations - evaluated
    return direct, through, readings, state_bytes(engine)


def wire_batches(
    dev_idx: np.ndarray, met_idx: np.ndarray, devices: list[str], data: tuple[np.ndarray, ...]
) -> list[ColumnarBatch]:
    """One engine batch as ingest hands it over: gateway batches of 5,000 decoded columns, each
    with its own device table (what ``decode_batch`` returns), in the same reading order."""
    series, vals, ts = data
    out: list[ColumnarBatch] = []
    for k, lo in enumerate(range(0, len(series), GATEWAY_BATCH)):
        s = series[lo : lo + GATEWAY_BATCH]
        used, local = np.unique(dev_idx[s], return_inverse=True)
        cols = ReadingColumns(
            tuple(devices[i] for i in used.tolist()),
            local.astype(np.int32),
            met_idx[s].astype(np.uint8),
            np.ascontiguousarray(vals[lo : lo + GATEWAY_BATCH], dtype=np.float64),
            np.ascontiguousarray(ts[lo : lo + GATEWAY_BATCH], dtype=np.int64),
            np.zeros(len(s), dtype=np.int64),
        )
        out.append(ColumnarBatch("bench-gw", k, cols))
    return out


def state_bytes(engine: RuleEngine) -> dict[str, float]:
    """Bytes of evaluation state per series: all of it, and per metric the dense window state.

    Counts the rows in use of every array (rings, per-series hysteresis, buckets, baselines),
    not the spare capacity the arrays grow into.
    """
    ctx = engine._ctx  # the benchmark looks inside on purpose
    n = ctx.n_series
    total = sum(arr[:n].nbytes for arr in (ctx.ring.ts.T, ctx.ring.val.T))
    total += sum(ctx.series[name][:n].nbytes for name in ctx.series.names())
    for rule in engine.rules:
        size = ctx.n_dev if device_level(rule) else n
        state = ctx.state[rule.id]
        total += sum(state[name][:size].nbytes for name in state.names())
    dense: dict[str, float] = {}
    for code, arrays in ctx.mstate.values():
        rows = int(ctx.metric_rows[code])
        nbytes = sum(arrays[name][:rows].nbytes for name in arrays.names())
        total += nbytes
        metric = ctx.names[code]
        dense[metric] = dense.get(metric, 0.0) + nbytes / max(rows, 1)
    return {"all": total / max(n, 1), **dense}


def run_reference(n_series: int, n_batches: int, depth: int) -> tuple[float, int]:
    """Evaluations per second of the reference loop on the same kind of stream."""
    devices, metrics, registry, data = batches(n_series, n_batches + 2, depth)
    warm = applied(metrics, history=False)
    data[:0] = warm
    rules = load_pack("dressings") + load_pack("equipment")
    reference = ReferenceEngine(rules, registry)
    readings = [
        [
            Reading(devices[i], metrics[i], float(v), METRICS[metrics[i]].unit, int(t), 0)
            for i, v, t in zip(s.tolist(), vals.tolist(), ts.tolist(), strict=True)
        ]
        for s, vals, ts in data
    ]
    for batch in readings[: len(warm) + 2]:
        reference.process(batch)
    before = reference.stats.evaluations
    start = time.perf_counter()
    for batch in readings[len(warm) + 2 :]:
        reference.process(batch)
    elapsed = time.perf_counter() - start
    evaluations = reference.stats.evaluations - before
    return evaluations / elapsed, evaluations


def main() -> None:
    """Run both and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--depth", type=int, default=1, help="readings per series per batch")
    parser.add_argument("--reference-series", type=int, default=2_000)
    parser.add_argument(
        "--stagger", action="store_true", help="ring heads differ between series (not in lock step)"
    )
    parser.add_argument(
        "--learning", action="store_true", help="baselines still learning (a fleet's first day)"
    )
    args = parser.parse_args()
    direct, through, objects, memory = run_engine(
        args.series, args.batches, args.depth, args.stagger, args.learning
    )
    rate, through_rate = direct.rate, through.rate
    ref_rate, ref_evaluations = run_reference(args.reference_series, 3, args.depth)
    print(
        f"series={args.series} batches={args.batches} depth={args.depth} "
        f"readings/batch={args.series * args.depth} stagger={args.stagger} "
        f"learning={args.learning}"
    )
    print(
        f"engine:    {rate / 1e6:8.2f} M reading-rule evaluations/s "
        f"({direct.evaluations} evaluations, {direct.events} events)"
    )
    print(
        f"runtime:   {through_rate / 1e6:8.2f} M reading-rule evaluations/s through "
        f"RuleRuntime.on_stored on decoded batches of {GATEWAY_BATCH:,} "
        f"({through.evaluations} evaluations, {through.events} events); "
        f"runtime/engine {through_rate / rate:.2f}"
    )
    print(
        f"objects:   {objects.rate / 1e6:8.2f} M reading-rule evaluations/s through "
        f"process_readings on Reading objects (on_stored before issue 17); "
        f"objects/engine {objects.rate / rate:.2f}"
    )
    print(
        f"reference: {ref_rate / 1e6:8.3f} M reading-rule evaluations/s "
        f"({args.reference_series} series subset, {ref_evaluations} evaluations)"
    )
    print(f"ratio:     {rate / ref_rate:8.1f}x engine, {through_rate / ref_rate:8.1f}x runtime")
    windows = ", ".join(f"{m} {b:,.0f}" for m, b in memory.items() if m != "all")
    print(f"state:     {memory['all']:,.0f} bytes/series (window state per series of: {windows})")


if __name__ == "__main__":
    main()
