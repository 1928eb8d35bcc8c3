"""Bad data a decoder may let through is BadBatch or stored, never an outage or a driver error."""

from __future__ import annotations

import pytest

from contract import Reading
from infra.errors import Poison, StorageUnavailable
from infra.telemetry import ReadingStore
from infra.telemetry.base import BadBatch, DeadLetter
from infra.telemetry.timescale import TimescaleStore
from tests.storage.factories import T0_US, batch, reading

YEAR_10000_US = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z

# Each a reading no database should be trusted to take as it is.
BAD_READINGS = {
    "nul_in_device_id": Reading("patch\x00x", "battery", 50.0, "%", T0_US, 1),
    "ts_us_2_62": Reading("patch-9", "battery", 50.0, "%", 2**62, 1),
    "year_10000": Reading("patch-9", "battery", 50.0, "%", YEAR_10000_US, 1),
    "seq_2_63": Reading("patch-9", "battery", 50.0, "%", T0_US, 2**63),
    "negative_ts_2_62": Reading("patch-9", "battery", 50.0, "%", -(2**62), 1),
    "lone_surrogate": Reading("patch-\ud800", "battery", 50.0, "%", T0_US, 1),
    "nan_value": Reading("patch-9", "battery", float("nan"), "%", T0_US, 1),
}
# What each backend must refuse; the rest it can store exactly (SQLite keeps any 64-bit
# integer and any encodable text).
REFUSED = {
    "timescale": set(BAD_READINGS) - {"nan_value"},
    "sqlite": {"seq_2_63", "lone_surrogate", "nan_value"},
}


def _backend(store: ReadingStore) -> str:
    return "timescale" if isinstance(store, TimescaleStore) else "sqlite"


@pytest.mark.parametrize("case", sorted(BAD_READINGS))
def test_a_batch_the_database_cannot_take_is_a_bad_batch_naming_it(
    store: ReadingStore, case: str
) -> None:
    good = batch(0, [reading(1), reading(2)])
    bad = batch(7, [reading(3), BAD_READINGS[case]])
    refused = case in REFUSED[_backend(store)]
    if not refused:
        assert store.store_batches([good, bad]).batches_new == 2
        return
    with pytest.raises(BadBatch, match=r"'gw-1'/7 cannot be stored") as caught:
        store.store_batches([good, bad])
    print(f"{_backend(store)} {case}: {caught.value}")
    assert store.reading_count() == 0, "a refused call stores nothing"
    # Neither a raw driver error nor an outage: the consume loop will dead-letter it.
    assert isinstance(caught.value, Poison) and not isinstance(caught.value, StorageUnavailable)
    with pytest.raises(BadBatch, match=r"^batch 'gw-1'/7 cannot be stored"):
        store.store_batches([bad])
    # The connection survived: the good batch alone, and then a duplicate of it, store fine.
    assert store.store_batches([good]).batches_new == 1
    assert store.store_batches([good]).batches_duplicate == 1
    assert store.reading_count() == 2


def test_dead_letters_of_hostile_input_are_stored_with_escaped_texts(store: ReadingStore) -> None:
    letter = DeadLetter(
        T0_US, "vigil/v1/gateways/g/batches", "bad \x00 \ud800", b"\x00\xff", "g\x00w", 2**63
    )
    store.store_dead_letters([letter])
    [kept] = store.dead_letters()
    assert kept.reason == "bad \\x00 \\ud800"
    assert kept.gateway_id == "g\\x00w"
    assert kept.batch_seq is None  # beyond int64: the raw payload keeps what was sent
    assert kept.payload == b"\x00\xff"
