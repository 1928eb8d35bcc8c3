"""Confirmations carry a MAC under a per-gateway key: a forged one makes a gateway forget nothing.

The gateway tests run on a plain broker on purpose: it stands for an ACL gone wrong, where
anyone may publish on a gateway's confirm topic, and the MAC is the only defence left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import (
    Confirmation,
    ContractError,
    Reading,
    authentic,
    decode_confirmation,
    encode_confirmation,
)
from contract.topics import confirm_topic
from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from infra.confirm_keys import KeyFileError, gateway_key, new_key, read_key, write_key
from infra.pki import Pki, Role
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import now_us
from ingest.worker import IngestSettings, IngestWorker
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

GATEWAY = "gw-mac"
KEY = bytes(range(32))

gateway_ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=64
)
seqs = st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=50)


@given(gateway_ids, seqs)
def test_a_macd_confirmation_is_authentic_under_its_key_only(
    gateway: str, batch: list[int]
) -> None:
    sent = Confirmation.of(gateway, batch)
    received = decode_confirmation(encode_confirmation(sent, KEY))
    assert (received.gateway_id, received.batch_seqs) == (sent.gateway_id, sent.batch_seqs)
    assert authentic(received, KEY)
    assert not authentic(received, bytes(32))
    # The MAC covers the batch_seqs and the gateway: moved onto other ones, it fails.
    more = Confirmation(gateway, (*received.batch_seqs, 2**62 + 1), received.mac)
    assert not authentic(more, KEY)
    other = Confirmation(gateway + "x", received.batch_seqs, received.mac)
    assert not authentic(other, KEY)


def test_an_old_confirmation_still_decodes_but_is_not_authentic() -> None:
    old = json.dumps({"v": 1, "gateway_id": GATEWAY, "batch_seqs": [3, 1]}).encode()
    confirmation = decode_confirmation(old)
    assert confirmation == Confirmation.of(GATEWAY, [1, 3])
    assert confirmation.mac is None and not authentic(confirmation, KEY)


@pytest.mark.parametrize("mac", ["", "zz" * 32, "ab" * 31, "AB" * 32, 7])
def test_a_malformed_mac_is_a_contract_error(mac: object) -> None:
    payload = json.dumps({"v": 1, "gateway_id": GATEWAY, "batch_seqs": [1], "mac": mac})
    with pytest.raises(ContractError):
        decode_confirmation(payload.encode())


def test_pki_derives_one_private_key_per_gateway_from_the_master(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.init()
    master = read_key(pki.confirm_master_path)
    for cn in ("gw-1", "gw-2"):
        pki.issue_client(cn, Role.GATEWAY)
    pki.issue_client("vigil-ingest", Role.SERVICE)
    keys = {cn: read_key(pki.confirm_key_path(cn)) for cn in ("gw-1", "gw-2")}
    assert keys == {cn: gateway_key(master, cn) for cn in keys}
    assert keys["gw-1"] != keys["gw-2"] and master not in keys.values()
    assert not pki.confirm_key_path("vigil-ingest").exists()
    for path in (pki.confirm_master_path, pki.confirm_key_path("gw-1")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pki.init()  # again: the master is kept, so the gateways' keys stay valid
    assert read_key(pki.confirm_master_path) == master


def test_a_bad_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="No such file"):
        read_key(tmp_path / "absent.key")
    (tmp_path / "short.key").write_text("abcd\n")
    with pytest.raises(KeyFileError, match="64 hex characters"):
        read_key(tmp_path / "short.key")
    write_key(tmp_path / "good.key", key := new_key())
    assert read_key(tmp_path / "good.key") == key


def _readings(count: int) -> list[Reading]:
    t0 = now_us() - 3_600_000_000
    return [
        Reading("patch-0003", "wound_temp", 31.0 + i % 10 / 10, "degC", t0 + i, i)
        for i in range(count)
    ]


def _gateway(tmp_path: Path, port: int, key: bytes | None) -> GatewaySettings:
    return GatewaySettings(
        gateway_id=GATEWAY,
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(
            port=port,
            batch_max_readings=10,
            linger_s=0.01,
            reconnect_backoff_s=0.1,
            confirm_timeout_s=0.5,
            confirm_backoff_max_s=1.0,
            confirm_key=key,
        ),
    )


@contextlib.asynccontextmanager
async def _ingest(port: int, db: Path, master: bytes | None) -> AsyncIterator[IngestWorker]:
    """A real ingest worker that MACs its confirmations with ``master``'s derived keys."""
    store = SQLiteStore(str(db))
    store.migrate()
    settings = IngestSettings(
        port=port, client_id="mac-ingest", reconnect_backoff_s=0.1, confirm_master_key=master
    )
    worker = IngestWorker(settings, store)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.subscribed.wait(), 15)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


async def test_forged_confirmations_make_the_gateway_forget_nothing(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    master = new_key()
    own_key = gateway_key(master, GATEWAY)
    topic = confirm_topic(GATEWAY)
    async with (
        Gateway(_gateway(tmp_path, mosquitto.port, own_key)) as gateway,
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="forger") as forger,
    ):
        await gateway.accept(_readings(30))
        await wait_until_async(lambda: gateway.outbox.stats().published_batches == 3)
        every = Confirmation.of(GATEWAY, [1, 2, 3])
        forgeries = [
            encode_confirmation(every),  # no MAC: what an old or keyless ingest would send
            encode_confirmation(every, gateway_key(master, "gw-other")),  # another gateway's
            encode_confirmation(every, new_key()),  # a guess
        ]
        for forged in forgeries:
            await forger.publish(topic, forged, qos=1)
        counters = gateway.counters
        await wait_until_async(
            lambda: counters.value("vigil_gateway_confirmations_rejected_total") == 3
        )
        assert counters.value("vigil_gateway_confirmations_total") == 0
        # Nothing forgotten: all three batches are still held, and they go out again.
        resent_before = counters.value("vigil_gateway_batches_resent_on_timeout_total")
        await wait_until_async(
            lambda: (
                counters.value("vigil_gateway_batches_resent_on_timeout_total") >= resent_before + 3
            ),
            what="the batches resent after the forged confirmations",
        )
        stats = gateway.outbox.stats()
        assert (stats.open_batches, stats.pending_readings) == (3, 30)
        assert [s.batch_seq for s in gateway.outbox.open_batch_states()] == [1, 2, 3]

        # Ingest's own confirmations, MACed with the key derived for this gateway, are taken.
        async with _ingest(mosquitto.port, tmp_path / "ingest.db", master) as ingest:
            await asyncio.wait_for(gateway.drained(), 20)
            assert ingest.store.reading_count() == 30
        assert counters.value("vigil_gateway_readings_confirmed_total") == 30
