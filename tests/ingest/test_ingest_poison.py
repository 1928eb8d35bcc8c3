"""Poison batches: each bad one dead-lettered with why, its neighbours stored, ingest running on.

Batches are built by hand (bypassing the contract's decoder, which may well reject them first)
and handed to the worker through a decoder stub keyed by payload, so these tests hold whatever
the contract lets through: storage itself must never crash-loop on data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

import ingest.messages
from contract import (
    Batch,
    DecodedBatch,
    Reading,
    TimeWindow,
    decode_confirmation,
    encode_batch,
)
from contract.topics import batch_topic, confirm_topic
from infra.telemetry import ReadingStore, open_store
from infra.telemetry.sqlite import SQLiteStore
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from tests.servers import PrivateMosquitto
from tests.storage.factories import reading

VIGIL = Path(sys.executable).with_name("vigil")
GW = "gw-hand"
YEAR_10000_US = 253_402_300_800_000_000


def _bad(**change: object) -> Reading:
    return reading(100)._replace(**change)


# batch_seq → batch; 2 to 5 carry one reading no database should be trusted with.
SENT = {
    1: Batch(GW, 1, (reading(1), reading(2))),
    2: Batch(GW, 2, (reading(3), _bad(device_id="patch\x00x"))),
    3: Batch(GW, 3, (_bad(ts_us=2**62),)),
    4: Batch(GW, 4, (_bad(ts_us=YEAR_10000_US),)),
    5: Batch(GW, 5, (reading(4), _bad(seq=2**63))),
    6: Batch(GW, 6, (reading(5), reading(6), reading(7))),
}
# The batches each backend refuses; SQLite keeps any 64-bit integer and text exactly.
REFUSED = {"timescale": {2, 3, 4, 5}, "sqlite": {5}}


def _key(batch: Batch) -> bytes:
    return f"hand-built:{batch.batch_seq}".encode()


def _backend(store: ReadingStore) -> str:
    return "timescale" if isinstance(store, TimescaleStore) else "sqlite"


def _good_readings(refused: set[int], batches: dict[int, Batch] = SENT) -> int:
    return sum(len(b.readings) for seq, b in batches.items() if seq not in refused)


@pytest.fixture(params=["sqlite", "timescale"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadingStore]:
    """A migrated, empty store of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'vigil.db'}"
    else:
        url = str(request.getfixturevalue("timescale_dsn"))
    opened = open_store(url)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def hand_built(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, Batch]:
    """Payloads the worker decodes to the hand-built batch registered under them."""
    table: dict[bytes, Batch] = {}
    real = ingest.messages.decode_batch

    def decode(payload: bytes, *, window: TimeWindow | None = None) -> DecodedBatch:
        batch = table.get(payload)
        return real(payload, window=window) if batch is None else DecodedBatch(batch, ())

    monkeypatch.setattr(ingest.messages, "decode_batch", decode)
    table.update({_key(b): b for b in SENT.values()})
    return table


async def _confirmed(client: aiomqtt.Client, want: set[int], within_s: float = 30) -> set[int]:
    """Batch_seqs confirmed on ``client``'s subscription until ``want`` are all in (or timeout)."""
    got: set[int] = set()

    async def collect() -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            got.update(decode_confirmation(message.payload).batch_seqs)
            if want <= got:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), within_s)
    return got


async def _until(condition: Callable[[], bool], within_s: float = 60.0) -> None:
    """Poll ``condition`` (run in a thread: it may query the store) until it holds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def _check_letters(store: ReadingStore, refused: set[int]) -> None:
    """One dead letter per refused batch, naming it and why storage refused it."""
    letters = store.dead_letters()
    assert sorted(letter.batch_seq or -1 for letter in letters) == sorted(refused)
    for letter in letters:
        assert f"'{GW}'/{letter.batch_seq} cannot be stored" in letter.reason
        assert letter.payload == _key(SENT[letter.batch_seq or -1])  # the message as received


@pytest.mark.services
async def test_in_one_group_each_bad_batch_is_dead_lettered_and_the_good_ones_stored(
    mosquitto: PrivateMosquitto, store: ReadingStore, hand_built: dict[bytes, Batch]
) -> None:
    refused = REFUSED[_backend(store)]
    worker = IngestWorker(IngestSettings(port=mosquitto.port, client_id="poison-group"), store)
    group = [
        aiomqtt.Message(batch_topic(GW), _key(b), 1, False, mid, None)
        for mid, b in enumerate(SENT.values(), start=1)
    ]
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="poison-gw") as client:
        await client.subscribe(confirm_topic(GW), qos=1)
        assert worker.loop.on_client is not None
        worker.loop.on_client(client)  # as the loop does once connected
        await worker.loop.process(client, group)  # the whole group at once, as one write
        confirmed = await _confirmed(client, set(SENT))

    c = worker.counters
    print(
        f"{_backend(store)}: stored {store.reading_count()} readings, dead-lettered "
        f"{worker.loop.dead_lettered} batches: "
        + "; ".join(letter.reason for letter in store.dead_letters())
    )
    assert store.reading_count() == _good_readings(refused)
    _check_letters(store, refused)
    assert worker.loop.dead_lettered == len(refused)
    assert worker.loop.committed == len(SENT) - len(refused)
    assert c.value("vigil_ingest_dead_letters_total", kind="message") == len(refused)
    assert c.value("vigil_ingest_messages_total") == len(SENT)
    assert c.value("vigil_ingest_storage_outages_total") == 0  # bad data is never an outage
    # Every batch's fate is final, stored or dead-lettered: the gateway may forget them all.
    assert confirmed == set(SENT)


@pytest.mark.services
async def test_the_running_worker_consumes_on_after_dead_lettering(
    mosquitto: PrivateMosquitto, store: ReadingStore, hand_built: dict[bytes, Batch]
) -> None:
    refused = REFUSED[_backend(store)]
    settings = IngestSettings(port=mosquitto.port, client_id="poison-live", reconnect_backoff_s=0.1)
    worker = IngestWorker(settings, store)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 15)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="poison-pub") as pub:
            for batch in SENT.values():
                await pub.publish(batch_topic(GW), _key(batch), qos=1)
            good = _good_readings(refused)
            await _until(
                lambda: store.reading_count() == good and store.dead_letter_count() == len(refused)
            )
            late = Batch(GW, 7, (reading(8),))
            await pub.publish(batch_topic(GW), encode_batch(late), qos=1)
            await _until(lambda: store.reading_count() == good + 1)
        assert not task.done(), "the worker stopped"
        _check_letters(store, refused)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_batch_under_another_gateways_topic_is_dead_lettered() -> None:
    store = SQLiteStore(":memory:")
    store.migrate()
    worker = IngestWorker(IngestSettings(), store)
    spoofed = Batch("gw-b", 3, (reading(1),))
    message = aiomqtt.Message(batch_topic("gw-a"), encode_batch(spoofed), 1, False, 1, None)

    assert await worker.handle([message]) == []  # nothing stored, nothing to confirm
    assert store.reading_count() == 0
    [letter] = store.dead_letters()
    assert letter.reason == "topic names gateway 'gw-a', payload gateway 'gw-b'"
    assert (letter.gateway_id, letter.batch_seq) == ("gw-b", 3)
    assert worker.counters.value("vigil_ingest_dead_letters_total", kind="topic") == 1


async def _confirm_by_resending(client: aiomqtt.Client, batch: Batch, within_s: float = 60) -> None:
    """Publish ``batch`` until ingest confirms it (before ingest subscribes, it is dropped)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while batch.batch_seq not in await _confirmed(client, {batch.batch_seq}, within_s=1):
        assert asyncio.get_running_loop().time() < deadline, f"batch {batch.batch_seq} unconfirmed"
        await client.publish(batch_topic(GW), encode_batch(batch), qos=1)


@pytest.mark.services
async def test_vigil_ingest_run_on_timescaledb_survives_hostile_batches(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    """The process, real payloads: whatever the contract lets through, storage refuses alone."""
    env = os.environ | {
        "PYTHONFAULTHANDLER": "1",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_INGEST__STORAGE_URL": timescale_dsn,
        "VIGIL_INGEST__REPLICA": "7",
    }
    with (tmp_path / "ingest.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(str(VIGIL), "-v", "ingest", "run", "--no-rules"), env=env, cwd=tmp_path, stderr=log
        )
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="hostile-gw") as client:
            await client.subscribe(confirm_topic(GW), qos=1)
            await _confirm_by_resending(client, SENT[1])  # ingest is subscribed now
            for seq in (2, 3, 4, 5, 6):
                await client.publish(batch_topic(GW), encode_batch(SENT[seq]), qos=1)
            with TimescaleStore(timescale_dsn) as store:
                # Refused whole by storage, or reading by reading (or whole) by the contract:
                # each bad batch leaves a dead letter, and the good batch 6 is stored.
                await _until(
                    lambda: (
                        store.dead_letter_count() >= 4
                        and store.reading_count() >= _good_readings({2, 3, 4, 5})
                    )
                )
                assert proc.returncode is None, "vigil ingest run exited"
                await _confirm_by_resending(client, Batch(GW, 7, (reading(8),)))
                reasons = "; ".join(letter.reason for letter in store.dead_letters())
                print(f"stored {store.reading_count()} readings; dead letters: {reasons}")
                assert "patch\x00x" not in {r.device_id for r in store.fetch_readings()}
        assert proc.returncode is None, "vigil ingest run exited"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.send_signal(signal.SIGABRT)
            await proc.wait()
            raise
    assert code == 0
    assert b"as vigil-ingest-7," in (tmp_path / "ingest.log").read_bytes()  # the replica's id
