"""Helpers for the BLE end-to-end tests: a real ingest worker and what patches should yield."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from contract.reading import Reading
from gateway.ble import BleAcquisition, PairedPatch
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from simulator.bleak_backend import Emission, VirtualPatch
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

# Codec resolution per metric: frames carry 0.01 units except exudate in 0.5 % steps.
RESOLUTION = {
    "wound_ph": 0.005,
    "wound_temp": 0.005,
    "skin_temp": 0.005,
    "exudate": 0.25,
    "battery": 0.0,
    "status_flags": 0.0,
}


@dataclass(frozen=True, slots=True)
class Expected:
    """One reading a patch put on the air, as the database should hold it."""

    value: float
    ts_us: int
    notified: bool  # stamped exactly at emission; adverts are heard up to one advert later


def expected_readings(
    patches: Iterable[VirtualPatch], paired: Iterable[PairedPatch]
) -> dict[tuple[str, str, int], Expected]:
    """(device, metric, seq) → value for every authentic measurement a scanner or link got."""
    keys = {p.address: p.key for p in paired}
    out: dict[tuple[str, str, int], Expected] = {}
    for patch in patches:
        key = keys.get(patch.address)
        if key is None:
            continue
        for e in patch.emissions:
            if e.air_key != key:
                continue
            if e.notified and not e.corrupted:
                metrics = _frame_values(e)
            elif e.advertised and not e.notified:
                metrics = _advert_values(e)
            else:
                continue
            for metric, value in metrics.items():
                out[(patch.device_id, metric, e.counter)] = Expected(value, e.ts_us, e.notified)
    return out


def _frame_values(e: Emission) -> dict[str, float]:
    s = e.sample
    values = {"battery": float(round(s.battery)), "status_flags": float(int(e.frame.status))}
    if not s.off_skin:
        values |= {"wound_temp": s.wound_temp, "skin_temp": s.skin_temp, "exudate": s.exudate}
        if not s.sensor_fault:
            values["wound_ph"] = s.wound_ph
    return values


def _advert_values(e: Emission) -> dict[str, float]:
    s = e.sample
    values = {"battery": float(round(s.battery))}
    if not s.off_skin:
        values |= {"wound_temp": s.wound_temp, "skin_temp": s.skin_temp, "exudate": s.exudate}
    return values


def auth_failures_expected(patches: Iterable[VirtualPatch], paired: Iterable[PairedPatch]) -> int:
    """Notified frames and heard adverts of paired patches not sealed with the key we hold."""
    keys = {p.address: p.key for p in paired}
    total = 0
    for patch in patches:
        key = keys.get(patch.address)
        if key is None:
            continue
        for e in patch.emissions:
            total += int(e.notified and (e.corrupted or e.air_key != key))
            total += e.adverts if e.air_key != key else 0
    return total


def assert_stored_exactly(
    stored: list[Reading], expected: dict[tuple[str, str, int], Expected], max_lag_s: float
) -> None:
    """The database holds each expected reading once, with its value and receipt time.

    Advert readings are stamped when heard: at the latest before the next measurement
    replaces the advert's payload, so ``max_lag_s`` is the patches' measurement interval.
    """
    keys = [(r.device_id, r.metric, r.seq) for r in stored]
    assert len(keys) == len(set(keys)), "a reading was stored twice"
    missing = set(expected) - set(keys)
    extra = set(keys) - set(expected)
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    for r in stored:
        want = expected[(r.device_id, r.metric, r.seq)]
        assert abs(r.value - want.value) <= RESOLUTION[r.metric] + 1e-9, (r, want)
        if want.notified:
            assert r.ts_us == want.ts_us, r
        else:
            assert 0 <= r.ts_us - want.ts_us <= max_lag_s * 1e6, (r, want)


@contextlib.asynccontextmanager
async def ingesting(
    broker: PrivateMosquitto, dsn: str, client_id: str | None = None
) -> AsyncIterator[TimescaleStore]:
    """A real ingest worker on ``broker`` writing to TimescaleDB; yields a store to query.

    Reusing ``client_id`` resumes the worker's persistent session (QoS 1 messages queued for it).
    """
    writer = TimescaleStore(dsn)
    writer.migrate()
    worker = IngestWorker(
        IngestSettings(port=broker.port, client_id=client_id or f"ingest-{uuid.uuid4().hex[:8]}"),
        writer,
    )
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.subscribed.wait(), 15.0)
    reader = TimescaleStore(dsn)
    try:
        yield reader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        reader.close()
        writer.close()


async def wait_stored(store: TimescaleStore, count: int, timeout_s: float = 60.0) -> None:
    """Wait until ``count`` readings are stored, then a little longer to catch extras."""
    await wait_until_async(
        lambda: store.reading_count() >= count, timeout_s, f"{count} readings stored"
    )
    await asyncio.sleep(0.5)  # a deliberate gap: an extra (duplicate) reading would land in it


async def wait_handed_over(acquisition: BleAcquisition, timeout_s: float = 10.0) -> None:
    """Wait until the acquisition has given every decoded reading to its sink."""
    await wait_until_async(lambda: not acquisition.pending, timeout_s, "the hand-over")


async def test_expected_readings_skip_unpaired_and_wrongly_sealed() -> None:
    from bleak import BleakScanner

    from simulator.bleak_backend import VirtualBleakScanner, VirtualRadio, populate
    from simulator.fleet import FleetSpec

    radio = VirtualRadio()
    a, b = populate(radio, FleetSpec(patches=2), connectable=0)
    async with BleakScanner(lambda _d, _a: None, backend=VirtualBleakScanner.bind(radio)):
        radio.advance(3.5)  # measurements at 0, 1, 2 and 3 s, each advertised 1 ms later
    paired = [PairedPatch(a.address, a.key, a.device_id)]
    expected = expected_readings([a, b], paired)
    assert {d for d, _, _ in expected} == {a.device_id}
    assert {s for _, _, s in expected} == {e.counter for e in a.emissions}
    assert auth_failures_expected([a], [PairedPatch(a.address, bytes(range(16)), "x")]) == 4
