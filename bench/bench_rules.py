"""Benchmark the vectorized rule engine against the reference loop in the same process.

100,000 series (patches: wound_ph, wound_temp, skin_temp, exudate, battery; equipment:
mains_voltage, ng_voltage, probe_health, error_code) with the dressing and equipment packs.
Prints reading-rule evaluations per second for both and their ratio. Single-threaded.

    .venv/bin/python -m bench.bench_rules [--series 100000] [--batches 20] [--depth 1] [--stagger]
                                          [--gateway-devices 500] [--gateway-batch 5000]
                                          [--shuffled-tables] [--heard-shuffled]

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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.wire_v2 import payload_v2
from contract import decode_batch
from contract.batch_binary import canonical_devices
from contract.batch_columns import ColumnarBatch
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
GATEWAY_BATCH = 5_000  # readings per gateway batch at most (bench_pipeline's batch_max_readings)
WARD_DEVICES = 500  # devices per gateway (bench_pipeline's ward of patches)


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
    per_batch: list[float] = field(default_factory=list)  # seconds of each timed batch
    batches: int = 0  # gateway batches handed over (runtime path)
    tables_cached: int = 0  # of those, device tables found in the runtime's cache

    @property
    def rate(self) -> float:
        """Evaluations per second."""
        return self.evaluations / self.seconds


def run_engine(
    n_series: int,
    n_batches: int,
    depth: int,
    stagger: bool = False,
    learning: bool = False,
    uplink: Uplink | None = None,
) -> tuple[Measured, Measured, Measured, dict[str, float]]:
    """RuleEngine.process on pre-interned columns, RuleRuntime.on_stored (what ingest calls) on
    decoded wire batches, and process_readings on Reading objects (the path before issue 17),
    of the same stream, batch by batch in turn (same load)."""
    uplink = uplink or Uplink()
    devices, metrics, registry, data = batches(n_series, n_batches + 2, depth)
    if stagger:
        data.insert(0, staggered(metrics))
    warm = applied(metrics, history=not learning)
    data[:0] = warm
    # Both paths get the readings in the order the gateways send them (grouped by gateway).
    data = [by_gateway(devices, d, uplink) for d in data]
    if uplink.heard_shuffled:
        data = [heard_in_new_order(devices, d, uplink, k) for k, d in enumerate(data)]
    rules = load_pack("dressings") + load_pack("equipment")
    engine = RuleEngine(rules, registry)
    table: DeviceTable = engine.devices
    dev_idx = table.intern_many(devices)
    met_idx = np.array([METRIC_CODES[m] for m in metrics], dtype=np.intp)
    cols = [Columns(dev_idx[s], met_idx[s], v, t) for s, v, t in data]
    # The data clock: the stream's time is not now, as in a replay. No store or broker: alerts
    # are booked and the rest of their delivery is measured by bench_service.
    runtime = RuleRuntime(rules, registry, None, None, RuntimeSettings(data_clock=True))
    wire = [wire_batches(devices, metrics, d, uplink, k) for k, d in enumerate(data)]
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
        events, hits = runtime.counters.events, runtime.engine.devices.table_hits
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
        direct.per_batch.append(middle - start)
        through.per_batch.append(end - middle)
        direct.events += len(found)
        through.evaluations += runtime.engine.stats.evaluations - before[1]
        through.seconds += end - middle
        through.events += runtime.counters.events - events
        through.batches += len(w)
        through.tables_cached += runtime.engine.devices.table_hits - hits
        batch = [r for b in w for r in b.columns.readings()]  # built untimed: ingest made them
        evaluated = objects.stats.evaluations
        start = time.perf_counter()
        readings.events += len(objects.process_readings(batch))
        readings.seconds += time.perf_counter() - start
        readings.evaluations += objects.stats.evaluations - evaluated
    return direct, through, readings, state_bytes(engine)


@dataclass(frozen=True)
class Uplink:
    """How the stream reaches ingest: gateways of ``devices`` consecutive devices each (a ward
    gateway's patches, or a site's machines), each sending its readings of an engine batch in
    batches of at most ``batch_max``, with the device table in the gateway packer's canonical
    order (``contract.batch_binary.canonical_devices``) or, ``shuffled``, in a new order each
    batch (another encoder, listing devices in a random order). ``heard_shuffled``: each
    gateway hears its devices in a new order every batch, so its readings' order changes."""

    devices: int = WARD_DEVICES
    batch_max: int = GATEWAY_BATCH
    shuffled: bool = False
    heard_shuffled: bool = False


def wire_batches(
    devices: list[str], metrics: list[str], data: tuple[np.ndarray, ...], uplink: Uplink, seed: int
) -> list[ColumnarBatch]:
    """One engine batch as ingest hands it over: every gateway's batches, encoded as wire v2 and
    decoded by the production decoder (``decode_batch``), in the engine batch's reading order."""
    series, vals, ts = data
    number = device_numbers(devices)
    gateway = number[series] // uplink.devices
    order = np.argsort(gateway, kind="stable")  # identity after ``by_gateway``
    rng = np.random.default_rng(seed)
    out: list[ColumnarBatch] = []
    bounds = np.flatnonzero(np.diff(gateway[order])) + 1
    for rows in np.split(order, bounds):
        for lo in range(0, len(rows), uplink.batch_max):
            part = rows[lo : lo + uplink.batch_max]
            gw = f"bench-gw-{int(gateway[part[0]])}"
            dev = number[series[part]]
            pay = gateway_payload(gw, len(out), dev, series[part], metrics, devices, rng, uplink)
            cols = (vals[part], ts[part], np.zeros(len(part), dtype=np.int64))
            decoded = decode_batch(pay(cols))
            assert not decoded.rejected, decoded.rejected[:3]
            out.append(decoded.batch)  # type: ignore[arg-type]  # v2 decodes to columns
    return out


def by_gateway(
    devices: list[str], data: tuple[np.ndarray, ...], uplink: Uplink
) -> tuple[np.ndarray, ...]:
    """An engine batch's readings grouped by gateway, each gateway's in the batch's order."""
    series = data[0]
    order = np.argsort(device_numbers(devices)[series] // uplink.devices, kind="stable")
    return tuple(column[order] for column in data)


def heard_in_new_order(
    devices: list[str], data: tuple[np.ndarray, ...], uplink: Uplink, seed: int
) -> tuple[np.ndarray, ...]:
    """Each gateway's readings with its devices in a random order (each device's own readings
    in their order), as a gateway hearing its devices in another order this time sends them."""
    number = device_numbers(devices)[data[0]]
    rank = np.random.default_rng(1000 + seed).permutation(int(number.max()) + 1)
    order = np.lexsort((np.arange(len(number)), rank[number], number // uplink.devices))
    return tuple(column[order] for column in data)


def device_numbers(devices: list[str]) -> np.ndarray:
    """Per series, its device's number (devices numbered in order of first appearance)."""
    table: dict[str, int] = {}
    return np.array([table.setdefault(d, len(table)) for d in devices], dtype=np.intp)


def gateway_payload(
    gateway_id: str,
    batch_seq: int,
    dev: np.ndarray,
    series: np.ndarray,
    metrics: list[str],
    devices: list[str],
    rng: np.random.Generator,
    uplink: Uplink,
) -> Callable[[tuple[np.ndarray, ...]], bytes]:
    """The v2 encoder of one gateway batch, given its (value, ts_us, seq) columns."""
    used, first, local = np.unique(dev, return_index=True, return_inverse=True)
    if uplink.shuffled:
        rank = rng.permutation(len(used))
    else:
        heard = [devices[int(series[f])] for f in first.tolist()]
        position = {d: i for i, d in enumerate(canonical_devices(heard))}
        rank = np.array([position[d] for d in heard], dtype=np.intp)
    table: list[str] = [""] * len(used)
    for r, f in zip(rank.tolist(), first.tolist(), strict=True):
        table[r] = devices[int(series[f])]
    names = [metrics[i] for i in series.tolist()]
    pairs = list(dict.fromkeys(names))
    pair = np.array([pairs.index(m) for m in names], dtype=np.intp)
    units = [(m, METRICS[m].unit) for m in pairs]
    return lambda cols: payload_v2(gateway_id, batch_seq, table, units, (rank[local], pair, *cols))


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
    parser.add_argument(
        "--gateway-devices", type=int, default=WARD_DEVICES, help="devices per gateway"
    )
    parser.add_argument(
        "--gateway-batch",
        type=int,
        default=GATEWAY_BATCH,
        help="readings per gateway batch at most",
    )
    parser.add_argument(
        "--shuffled-tables",
        action="store_true",
        help="each gateway batch lists its devices in a new order (no two tables alike)",
    )
    parser.add_argument(
        "--heard-shuffled",
        action="store_true",
        help="gateways hear their devices in a new order each batch (readings and tables)",
    )
    args = parser.parse_args()
    uplink = Uplink(
        args.gateway_devices, args.gateway_batch, args.shuffled_tables, args.heard_shuffled
    )
    direct, through, objects, memory = run_engine(
        args.series, args.batches, args.depth, args.stagger, args.learning, uplink
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
        f"RuleRuntime.on_stored ({through.evaluations} evaluations, {through.events} events); "
        f"runtime/engine {through_rate / rate:.2f}"
    )
    ratios = np.array(direct.per_batch) / np.array(through.per_batch)
    low, mid, high = np.percentile(ratios, [10, 50, 90])
    print(
        f"           runtime/engine per batch (each path's time for the same batch): "
        f"median {mid:.2f}, 10th-90th percentile {low:.2f}-{high:.2f}"
    )
    order = "shuffled each batch" if uplink.shuffled else "in the packer's canonical order"
    order += ", devices heard in a new order each batch" if uplink.heard_shuffled else ""
    print(
        f"           on {through.batches / args.batches:.0f} decoded v2 gateway batches per "
        f"engine batch: {uplink.devices} devices per gateway, at most {uplink.batch_max:,} "
        f"readings per batch, device tables {order}; {through.tables_cached} of "
        f"{through.batches} tables from the runtime's cache"
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
