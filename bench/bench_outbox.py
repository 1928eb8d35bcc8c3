"""Draining an hour of backlog: outbox → uplink → Mosquitto, against a raw publish baseline.

Run as ``.venv/bin/python -m bench.bench_outbox [--readings N] [--batch B]``. Fills an outbox
with ``N`` readings (default one hour at 1,000 readings/s) while no broker is up, then starts a
private Mosquitto and a subscriber process that counts the readings in each payload and
confirms each batch as ingest would (it reads the payload's header, but does not validate or
store: this measures the gateway side, not ingest). The drain time runs from the uplink's start
until the outbox is empty, i.e. until every batch was confirmed (a batch leaves the outbox only
on its confirmation, not on the broker's PUBACK). The baseline publishes the same number of
pre-encoded payloads of the same size with aiomqtt, QoS 1, to the same broker and subscriber
(which sends the same confirmations, to nobody), until the subscriber has counted every
reading, so the ratio is the cost of the outbox and of waiting for confirmations. CPU-seconds
per million readings of this process (the outbox, and the uplink while draining) are printed
too: on a shared machine they vary less than the wall times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from contract import Batch, Confirmation, Reading, encode_batch, encode_confirmation
from contract.batch_binary import MAGIC_V2, header_bounds
from contract.topics import confirm_topic
from gateway.counters import GatewayCounters
from gateway.outbox import Outbox
from gateway.uplink import Uplink, UplinkSettings
from testing_services import PrivateMosquitto

T0_US = 1_767_225_600_000_000
PER_SECOND = 1_000
TOPIC = "vigil/v1/gateways/bench/batches"
METRICS = (
    ("wound_temp", "degC"),
    ("skin_temp", "degC"),
    ("wound_ph", "pH"),
    ("exudate", "%"),
    ("battery", "%"),
)


def second_of_readings(second: int) -> list[Reading]:
    """What 200 patches with five metrics each deliver in one second."""
    out = []
    for i in range(PER_SECOND):
        device, m = divmod(i, len(METRICS))
        metric, unit = METRICS[m]
        out.append(
            Reading(
                f"patch-{device:04d}",
                metric,
                20.0 + (i % 97) / 10.0,
                unit,
                T0_US + second * 1_000_000,
                second,
            )
        )
    return out


def own_cpu() -> float:
    """CPU seconds of this process (the outbox and the uplink; not the broker or counter)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fill(path: Path, readings: int) -> float:
    """Append ``readings`` one second's worth at a time, as a live gateway would; seconds."""
    outbox = Outbox(path, "bench", max_readings=readings + 1)
    started = time.perf_counter()
    for second in range(readings // PER_SECOND):
        outbox.append(second_of_readings(second))
    outbox.close()
    return time.perf_counter() - started


def header(payload: bytes) -> dict[str, Any]:
    """gateway_id, batch_seq and count of a wire payload (v2 binary, or v1 JSON)."""
    bounds = header_bounds(payload) if payload.startswith(MAGIC_V2) else None
    if bounds is None:
        doc = json.loads(payload)
        return {**doc, "count": len(doc["value"])}
    start, end, _ = bounds
    return dict(json.loads(payload[start:end]))


def subscribe(port: int, total: int) -> None:
    """Subscriber process: count and confirm readings until ``total``, then print the time."""

    async def main() -> None:
        seen = 0
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier=f"counter-{os.getpid()}", max_queued_incoming_messages=0
        ) as client:
            await client.subscribe(TOPIC, qos=1)
            print("ready", flush=True)
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                doc = header(message.payload)
                seen += doc["count"]
                # What ingest does after its commit: the gateway forgets the batch only now.
                confirmation = Confirmation.of(doc["gateway_id"], [doc["batch_seq"]])
                await client.publish(
                    confirm_topic(confirmation.gateway_id), encode_confirmation(confirmation), qos=1
                )
                if seen >= total:
                    print(f"done {time.time():.6f}", flush=True)
                    return

    asyncio.run(main())


def start_counter(port: int, total: int) -> subprocess.Popen[str]:
    """The subscriber in its own process (its own CPU), ready when this returns."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_outbox", "--subscribe", str(port), str(total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def finished_at(proc: subprocess.Popen[str]) -> float:
    """The wall-clock time the subscriber counted its last reading."""
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    proc.wait()
    return float(line[1])


async def raw_publish(port: int, payloads: list[bytes], inflight: int) -> None:
    """Baseline: pre-encoded payloads straight to the broker, QoS 1, ``inflight`` at a time."""
    slots = asyncio.Semaphore(inflight)
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-raw", max_inflight_messages=inflight
    ) as client:

        async def one(payload: bytes) -> None:
            async with slots:
                await client.publish(TOPIC, payload, qos=1)

        await asyncio.gather(*(one(p) for p in payloads))


async def drain(path: Path, port: int, settings: UplinkSettings) -> None:
    """Run the gateway's uplink on the filled outbox until it is empty: all confirmed."""
    outbox = Outbox(path, "bench")
    uplink = Uplink(outbox, settings, GatewayCounters())
    uplink.topic = TOPIC
    task = asyncio.create_task(uplink.run())
    while True:
        if not (await asyncio.to_thread(outbox.stats)).pending_readings:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    outbox.close()


def main() -> None:
    """Fill, then time the baseline and the drain, and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=3600 * PER_SECOND)
    parser.add_argument("--batch", type=int, default=10_000, help="batch_max_readings")
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--max-unconfirmed", type=int, default=UplinkSettings().max_unconfirmed)
    parser.add_argument(
        "--puback",
        action="store_true",
        help="forget batches on PUBACK (require_confirmation=false), to compare",
    )
    parser.add_argument("--subscribe", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        subscribe(*args.subscribe)
        return
    total = args.readings - args.readings % PER_SECOND
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-outbox-"))
    path = workdir / "outbox.db"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    cpu = own_cpu()
    fill_s = fill(path, total)
    fill_cpu = (own_cpu() - cpu) / (total / 1e6)
    print(
        f"fill      {total:>10,} readings in {fill_s:6.1f} s  ({total / fill_s:>9,.0f}/s)"
        f"  outbox {path.stat().st_size / 1e6:,.0f} MB, {fill_cpu:.2f} CPU-s per million"
    )

    broker = PrivateMosquitto()
    broker.start()
    try:
        sample = Batch(
            "bench",
            1,
            tuple(r for s in range(args.batch // PER_SECOND + 1) for r in second_of_readings(s))[
                : args.batch
            ],
        )
        payload = encode_batch(sample)
        payloads = [payload] * (total // args.batch)
        counted = len(payloads) * args.batch
        counter = start_counter(broker.port, counted)
        started = time.time()
        asyncio.run(raw_publish(broker.port, payloads, args.inflight))
        raw_s = finished_at(counter) - started
        print(
            f"baseline  {counted:>10,} readings in {raw_s:6.1f} s  ({counted / raw_s:>9,.0f}/s)"
            f"  pre-encoded {len(payload) / 1e6:.2f} MB payloads, aiomqtt QoS 1"
        )

        counter = start_counter(broker.port, total)
        settings = UplinkSettings(
            port=broker.port,
            batch_max_readings=args.batch,
            max_inflight=args.inflight,
            max_unconfirmed=args.max_unconfirmed,
            require_confirmation=not args.puback,
        )
        started, cpu = time.time(), own_cpu()
        asyncio.run(drain(path, broker.port, settings))
        drain_s = time.time() - started
        drain_cpu = (own_cpu() - cpu) / (total / 1e6)
        counted_s = finished_at(counter) - started
        print(
            f"drain     {total:>10,} readings in {drain_s:6.1f} s  ({total / drain_s:>9,.0f}/s)"
            f"  until {'acknowledged' if args.puback else 'confirmed'}"
            f" (all counted at {counted_s:.1f} s),"
            f" batch_max_readings {args.batch:,}, max_unconfirmed {args.max_unconfirmed};"
            f" gateway {drain_cpu:.2f} CPU-s per million"
        )
        print(
            f"ratio     drain / baseline = {drain_s / raw_s:.2f}x   goal < 30 s: "
            f"{'met' if drain_s < 30 else 'MISSED'}"
        )
    finally:
        broker.cleanup()


if __name__ == "__main__":
    main()
