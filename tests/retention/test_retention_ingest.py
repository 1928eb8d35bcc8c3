"""Retention through ingest: a resent batch of pruned readings, and `vigil ingest run`'s prune.

The rule (docs/deployment.md, "Retention"): batch claims are kept at least as long as readings,
so a batch resent after its readings were pruned is still a duplicate; and its readings are older
than ingest's reading-age window (400 days, like the reading retention), so ingest dead-letters
them and confirms the batch whether or not its claim is left: nothing pruned comes back. Were
readings kept for less than that window, a resend after its claim went too would be stored
again, until the next prune.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from contract import Batch, Reading, encode_batch
from contract.topics import batch_topic
from infra.retention import DAY_US, RetentionPolicy
from infra.telemetry import DeadLetter, ReadingStore, open_store
from infra.telemetry.retention import prune_telemetry
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import now_us
from ingest.worker import IngestSettings, IngestWorker
from tests.servers import PrivateMosquitto

VIGIL = Path(sys.executable).parent / "vigil"
GW = "gw-old"


@pytest.fixture(params=["sqlite", "timescale"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadingStore]:
    """A migrated, empty store of each backend."""
    url = (
        f"sqlite:///{tmp_path / 'vigil.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("timescale_dsn"))
    )
    opened = open_store(url)
    opened.migrate()
    yield opened
    opened.close()


def _readings(ts_us: int, count: int, device_id: str = "patch-1") -> tuple[Reading, ...]:
    return tuple(
        Reading(device_id, "wound_temp", 31.0, "degC", ts_us + i * 60_000_000, i)
        for i in range(count)
    )


def _message(batch: Batch) -> aiomqtt.Message:
    return aiomqtt.Message(batch_topic(batch.gateway_id), encode_batch(batch), 1, False, 1, None)


async def test_a_resent_batch_older_than_the_window_is_refused(store: ReadingStore) -> None:
    policy = RetentionPolicy()  # the defaults: readings kept 400 days, ingest's window too
    now = now_us()
    # Stored when it was fresh (ingest's window then let it in), now past the retention.
    old = Batch(GW, 7, _readings(now - (policy.readings_days + 20) * DAY_US, 5))
    store.store_batches([old])
    worker = IngestWorker(IngestSettings(), store)

    pruned = {p.kind: p.rows for p in prune_telemetry(store, policy, now)}
    assert pruned["readings"] == 5 and pruned["batch_claims"] == 0  # the claim is younger
    # Claimed or not, the resend's readings are older than the window: dead-lettered, and the
    # batch confirmed so that the gateway forgets it.
    assert [c.batch_seqs for c in await worker.handle([_message(old)])] == [(7,)]
    assert store.prune_batch_claims(now_us() + 1).rows == 1  # as if its retention had passed
    assert [c.batch_seqs for c in await worker.handle([_message(old)])] == [(7,)]
    assert store.reading_count() == 0
    letters = store.dead_letters()
    assert len(letters) == 10 and all("retention horizon" in x.reason for x in letters)


async def test_a_claim_keeps_a_resend_of_pruned_readings_out(store: ReadingStore) -> None:
    """With readings kept for less than ingest's window, the claim is what keeps them out."""
    policy = RetentionPolicy(readings_days=30, batch_claims_days=30)
    now = now_us()
    old = Batch(GW, 8, _readings(now - 40 * DAY_US, 5))  # inside the 400-day window
    store.store_batches([old])
    worker = IngestWorker(IngestSettings(), store)

    assert prune_telemetry(store, policy, now)[0].rows == 5
    assert [c.batch_seqs for c in await worker.handle([_message(old)])] == [(8,)]
    assert store.reading_count() == 0 and store.dead_letter_count() == 0  # a duplicate

    # Past the claim retention as well, a resend is stored anew; the next prune removes it.
    assert store.prune_batch_claims(now_us() + 1).rows == 1
    assert [c.batch_seqs for c in await worker.handle([_message(old)])] == [(8,)]
    assert store.reading_count() == 5
    assert prune_telemetry(store, policy, now_us())[0].rows == 5
    assert store.reading_count() == 0


async def _until(condition: Callable[[], bool], within_s: float = 60.0) -> None:
    """Wait until ``condition()`` holds, or fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"condition still false after {within_s}s")


@pytest.mark.services
async def test_vigil_ingest_run_prunes_periodically(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    db = tmp_path / "vigil.db"
    now = now_us()
    seed = SQLiteStore(str(db))
    seed.migrate()
    recent = _readings(now - DAY_US, 3, "patch-new")
    seed.store_batches([Batch(GW, 1, _readings(now - 500 * DAY_US, 4)), Batch(GW, 2, recent)])
    fresh_letter = DeadLetter(now - DAY_US, "t", "recent", b"{")
    seed.store_dead_letters([DeadLetter(now - 100 * DAY_US, "t", "old", b"{"), fresh_letter])
    seed.close()
    env = os.environ | {
        "PYTHONFAULTHANDLER": "1",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{db}",
        "VIGIL_INGEST__CLIENT_ID": "retention-ingest",
        "VIGIL_RETENTION__INTERVAL_S": "0.2",
    }
    proc = await asyncio.create_subprocess_exec(
        str(VIGIL), "ingest", "run", "--no-rules", env=env, cwd=tmp_path
    )
    store = SQLiteStore(str(db))
    try:
        await _until(lambda: store.reading_count() == 3 and store.dead_letter_count() == 1)
        assert store.fetch_readings() == list(recent)
        assert store.dead_letters() == [fresh_letter]
        # Not just once at start: a letter that is already too old when it arrives goes too.
        store.store_dead_letters([DeadLetter(now - 200 * DAY_US, "t", "late", b"{")])
        await _until(lambda: store.dead_letter_count() == 1)
        assert proc.returncode is None, "ingest exited"
    finally:
        store.close()
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.send_signal(signal.SIGABRT)  # with PYTHONFAULTHANDLER: where it hung
            await proc.wait()
            raise
    assert code == 0
