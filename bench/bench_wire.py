"""Batch wire formats by measurement: columnar JSON (stdlib json, orjson) against the binary v2.

    .venv/bin/python -m bench.bench_wire [--readings 5000] [--devices 500]

One gateway batch of simulated patch readings. For each format: encoded bytes per reading,
encoding time (the gateway's cost) and decoding into validated columns (ingest's cost), best of
``--repeats``. The orjson row parses with orjson and then validates the same columns, without the
strict schema check of the real v1 decoder (so it flatters JSON). Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

from contract import Batch, Reading, decode_batch, encode_batch
from contract.batch_decode import decode_v1_columns

T0_US = 1_767_225_600_000_000
PATCH = (("wound_temp", "degC", 33.0), ("skin_temp", "degC", 33.5), ("wound_ph", "pH", 7.0))


def sample(readings: int, devices: int) -> Batch:
    """``readings`` patch readings of ``devices`` patches, round-robin over three metrics."""
    out = []
    for i in range(readings):
        tick, rest = divmod(i, devices * len(PATCH))
        device, m = divmod(rest, len(PATCH))
        metric, unit, level = PATCH[m]
        value = level + ((i * 7919) % 1000) / 4000
        out.append(Reading(f"patch-{device:05d}", metric, value, unit, T0_US + tick * 10**6, tick))
    return Batch("ward-3-gateway", 42, tuple(out))


def best(work: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``work``, in seconds."""
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def orjson_v1(batch: Batch) -> bytes:
    """Version 1 (columnar JSON) encoded with orjson."""
    readings = batch.readings
    return orjson.dumps(
        {
            "v": 1,
            "gateway_id": batch.gateway_id,
            "batch_seq": batch.batch_seq,
            "device_id": [r.device_id for r in readings],
            "metric": [r.metric for r in readings],
            "value": [float(r.value) for r in readings],
            "unit": [r.unit for r in readings],
            "ts_us": [r.ts_us for r in readings],
            "seq": [r.seq for r in readings],
        }
    )


def orjson_decode(payload: bytes) -> object:
    """orjson parse, then the same columnar validation (no strict schema check)."""
    doc = orjson.loads(payload)
    return decode_v1_columns(
        doc["gateway_id"],
        doc["batch_seq"],
        doc["device_id"],
        doc["metric"],
        doc["value"],
        doc["unit"],
        doc["ts_us"],
        doc["seq"],
        None,
    )


def main() -> None:
    """Print bytes and µs per reading for each format."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    batch = sample(args.readings, args.devices)
    n = args.readings
    formats: dict[str, tuple[Callable[[], bytes], Callable[[bytes], object]]] = {
        "v1 JSON, stdlib json + pydantic": (lambda: encode_batch(batch, 1), decode_batch),
        "v1 JSON, orjson (no schema check)": (lambda: orjson_v1(batch), orjson_decode),
        "v2 binary columnar": (lambda: encode_batch(batch, 2), decode_batch),
    }
    print(f"one batch of {n:,} readings from {args.devices} patches, best of {args.repeats}")
    print(f"{'format':<36} {'bytes/reading':>13} {'encode µs/r':>12} {'decode µs/r':>12}")
    rows = {}
    for name, (encode, decode) in formats.items():
        payload = encode()
        assert decode_batch(payload).batch == batch or "orjson" in name
        enc = best(encode, args.repeats) / n * 1e6
        dec = best(lambda decode=decode, payload=payload: decode(payload), args.repeats) / n * 1e6
        rows[name] = (len(payload) / n, enc, dec)
        print(f"{name:<36} {len(payload) / n:>13.1f} {enc:>12.3f} {dec:>12.3f}")
    v1 = rows["v1 JSON, stdlib json + pydantic"]
    v2 = rows["v2 binary columnar"]
    print(f"v2 vs v1: {v1[0] / v2[0]:.1f}x smaller, decode {v1[2] / v2[2]:.1f}x faster")
    v2_payload = encode_batch(batch, 2)
    objects = best(lambda: decode_batch(v2_payload).batch.readings, args.repeats) / n * 1e6
    print(
        f"v2 decode, then Reading objects built (what the hot path no longer does): {objects:.3f}"
    )


if __name__ == "__main__":
    main()
