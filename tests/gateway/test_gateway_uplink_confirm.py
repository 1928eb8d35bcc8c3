"""The uplink forgets a batch only once ingest confirms storing it: real Mosquitto, real ingest."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from contract import Confirmation, Reading, encode_confirmation
from contract.topics import confirm_topic
from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from tests.gateway.confirming_ingest import sqlite_ingest
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

T0_US = 1_767_225_600_000_000

pytestmark = pytest.mark.services


def readings(start: int, count: int) -> list[Reading]:
    """``count`` distinct valid readings numbered from ``start``."""
    return [
        Reading("patch-0003", "wound_temp", 31.0 + i % 10 / 10, "degC", T0_US + i, i)
        for i in range(start, start + count)
    ]


def settings(tmp_path: Path, port: int, gateway_id: str, **uplink: Any) -> GatewaySettings:
    """A gateway with small batches on a private outbox file."""
    return GatewaySettings(
        gateway_id=gateway_id,
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(
            port=port,
            batch_max_readings=10,
            linger_s=0.01,
            reconnect_backoff_s=0.1,
            reconnect_backoff_max_s=0.5,
            **uplink,
        ),
    )


async def test_unconfirmed_batches_are_bounded_resent_with_backoff_then_drained(
    mosquitto: PrivateMosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "ingest.db"
    async with sqlite_ingest(mosquitto.port, db):
        pass  # ingest's persistent session exists, then ingest goes down
    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    config = settings(
        tmp_path,
        mosquitto.port,
        "gw-bp",
        max_unconfirmed=3,
        confirm_timeout_s=0.3,
        confirm_backoff_max_s=30.0,
    )
    async with Gateway(config) as gateway:
        await gateway.accept(readings(0, 100))
        await wait_until_async(lambda: gateway.outbox.stats().published_batches == 3)
        # A deliberate gap, and what the test measures: two seconds with no ingest to confirm,
        # in which the confirmation timeouts must back off rather than resend every 0.3 s.
        await asyncio.sleep(2.0)
        stats = gateway.outbox.stats()
        # Back-pressure: three batches out, nothing more cut, nothing forgotten.
        assert (stats.open_batches, stats.published_batches, stats.pending_readings) == (3, 3, 100)
        assert gateway.counters.value("vigil_gateway_batches_acked_total") >= 3
        # Timeouts after ~0.3, 0.9, 2.1 s: the doubling keeps it to a few rounds of 3 batches
        # (a fixed 0.3 s timeout would have resent 6 rounds).
        resent = gateway.counters.value("vigil_gateway_batches_resent_on_timeout_total")
        assert 3 <= resent <= 9, resent
        warnings = [r.getMessage() for r in caplog.records if "no confirmation" in r.getMessage()]
        # PUBACKs arrive at slightly different times: the first round may hold only batch 1.
        assert warnings and confirm_topic("gw-bp") in warnings[0]
        assert "batch_seq 1" in warnings[0] and "after 0.3s" in warnings[0]

        async with sqlite_ingest(mosquitto.port, db) as ingest:
            await asyncio.wait_for(gateway.drained(), 30)
            assert ingest.store.reading_count() == 100
            await wait_until_async(
                lambda: ingest.counters.value("vigil_ingest_messages_total") >= 10 + resent
            )  # every queued copy came through
            duplicates = ingest.counters.value("vigil_ingest_batches_duplicate_total")
        assert gateway.counters.value("vigil_gateway_readings_confirmed_total") == 100
        assert gateway.counters.value("vigil_gateway_confirmations_total") >= 1
    assert duplicates >= resent  # the resent copies were absorbed, not stored twice


async def test_confirmations_sent_while_the_gateway_is_away_are_queued_for_it(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    db = tmp_path / "ingest.db"
    async with sqlite_ingest(mosquitto.port, db):
        pass
    config = settings(tmp_path, mosquitto.port, "gw-away", confirm_timeout_s=60.0)
    async with Gateway(config) as gateway:
        await gateway.accept(readings(0, 50))
        await wait_until_async(lambda: gateway.outbox.stats().published_batches == 5)
    # The gateway is gone; ingest stores the queued batches and confirms them into its session.
    async with sqlite_ingest(mosquitto.port, db) as ingest:
        await wait_until_async(
            lambda: ingest.counters.value("vigil_ingest_batches_confirmed_total") >= 5
        )
        assert ingest.store.reading_count() == 50
    # Back, with ingest down again: the queued confirmations alone empty the outbox.
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.drained(), 10)
        assert gateway.counters.value("vigil_gateway_readings_confirmed_total") == 50
    async with sqlite_ingest(mosquitto.port, db) as ingest:  # whatever it resent on connect
        # A deliberate gap: nothing should arrive, and a resent duplicate would land in it.
        await asyncio.sleep(0.5)
        assert ingest.store.reading_count() == 50


async def test_puback_semantics_when_confirmation_is_not_required(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    config = settings(tmp_path, mosquitto.port, "gw-old", require_confirmation=False)
    async with Gateway(config) as gateway:  # no ingest anywhere: the broker's PUBACK is enough
        await gateway.accept(readings(0, 30))
        await asyncio.wait_for(gateway.drained(), 10)
        assert gateway.counters.value("vigil_gateway_batches_acked_total") == 3
        assert gateway.counters.value("vigil_gateway_confirmations_total") == 0


async def test_only_valid_confirmations_for_this_gateway_remove_batches(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    config = settings(tmp_path, mosquitto.port, "gw-conf", confirm_timeout_s=60.0)
    topic = confirm_topic("gw-conf")
    async with (
        Gateway(config) as gateway,
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="confirmer") as client,
    ):
        await gateway.accept(readings(0, 30))
        await wait_until_async(lambda: gateway.outbox.stats().published_batches == 3)
        await client.publish(topic, b"\x00not json", qos=1)
        await client.publish(topic, b'{"v": 2, "gateway_id": "gw-conf", "batch_seqs": [1]}', qos=1)
        await client.publish(topic, encode_confirmation(Confirmation.of("gw-x", [1, 2, 3])), qos=1)
        await client.publish(
            topic, encode_confirmation(Confirmation.of("gw-conf", [2, 999])), qos=1
        )
        await wait_until_async(
            lambda: gateway.counters.value("vigil_gateway_confirmations_total") == 1
        )
        assert gateway.counters.value("vigil_gateway_confirmations_rejected_total") == 3
        assert [s.batch_seq for s in gateway.outbox.open_batch_states()] == [1, 3]
        await client.publish(
            topic, encode_confirmation(Confirmation.of("gw-conf", [1, 2, 3])), qos=1
        )
        await asyncio.wait_for(gateway.drained(), 10)
        assert gateway.counters.value("vigil_gateway_readings_confirmed_total") == 30
