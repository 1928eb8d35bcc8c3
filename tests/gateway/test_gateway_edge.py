"""The gateway validates at the edge, survives poison, bounds its dead letters, and supervises."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from contract import Reading
from contract.topics import equipment_topic
from gateway.app import Gateway, GatewaySettings
from gateway.dead_letters import Letter
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.outbox import Outbox
from gateway.source import ReadingSink
from gateway.uplink import UplinkSettings
from infra.time_us import now_us
from tests.servers import PrivateMosquitto


async def until(condition: Callable[[], bool], within_s: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail with a timeout after ``within_s``."""
    for _ in range(int(within_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"condition still false after {within_s}s")


def settings(tmp_path: Path, port: int = 1, **extra: Any) -> GatewaySettings:
    """A gateway whose uplink points at ``port`` (nothing listening is fine: it retries)."""
    return GatewaySettings(
        gateway_id="gw-edge",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(port=port, reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.2),
        **extra,
    )


def pending(gateway: Gateway) -> list[Reading]:
    """Readings in the outbox, unbatched ones included."""
    return gateway.outbox.pending()


async def test_accept_dead_letters_what_the_outbox_could_not_store(tmp_path: Path) -> None:
    now = now_us()
    good = Reading("patch-0001", "battery", 80.0, "%", now, 1)
    hostile = [
        good._replace(seq=2**63),  # OverflowError in SQLite before
        good._replace(ts_us=2**63),
        good._replace(ts_us=253_402_300_800_000_000),  # year 10000
        good._replace(ts_us=now // 1_000_000),  # seconds
        good._replace(ts_us=now + 3_600_000_000),  # an hour ahead: clock skew
        good._replace(ts_us=now - 500 * 86_400_000_000),  # older than the horizon
        good._replace(device_id="patch\x00"),
        good._replace(device_id="patch-\ud800"),
        good._replace(device_id="patch/1"),
        good._replace(value=float("nan")),
        good._replace(value=True),
    ]
    async with Gateway(settings(tmp_path)) as gateway:
        await gateway.accept([*hostile, good])
        assert pending(gateway) == [good]
        letters = gateway.outbox.dead_letters()
        assert len(letters) == len(hostile)
        reasons = [reason for _, reason, _ in letters]
        for fragment in (
            "64-bit",
            "year 9999",
            "looks like seconds",
            "in the future",
            "retention horizon",
            "U+0000",
            "U+D800",
            "'/'",
            "not finite",
            "must be a number",
        ):
            assert any(fragment in r for r in reasons), fragment
        for source, reason, payload in letters:
            assert source.isprintable() and reason.isprintable()
            json.loads(payload)  # the reading's fields, as JSON
        skew = gateway.counters.value(
            "vigil_gateway_future_skew_rejected_total", device_id="patch-0001"
        )
        assert skew == 1


async def test_a_reading_the_outbox_refuses_is_dead_lettered_not_fatal(tmp_path: Path) -> None:
    now = now_us()
    readings = [Reading("patch-0001", "battery", 80.0, "%", now, seq) for seq in range(3)]
    async with Gateway(settings(tmp_path)) as gateway:
        real_append = gateway.outbox.append

        def append(group: Sequence[Reading]) -> int:
            if any(r.seq == 1 for r in group):
                raise OverflowError("Python int too large to convert to SQLite INTEGER")
            return real_append(group)

        gateway.outbox.append = append  # type: ignore[method-assign]
        await gateway.accept(readings)
        assert [r.seq for r in pending(gateway)] == [0, 2]
        ((_, reason, _),) = gateway.outbox.dead_letters()
        assert reason.startswith("outbox refused the reading: OverflowError")


def test_dead_letters_are_bounded_in_bytes_oldest_first_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, "gw", max_dead_letter_bytes=20_000)
    dropped = sum(
        outbox.dead_letter_many([Letter(i, "src", f"reason {i}", b"x" * 1000)]) for i in range(100)
    )
    stats = outbox.dead_letter_stats()
    assert stats.bytes <= 20_000 and stats.count < 20
    assert stats.dropped == dropped == 100 - stats.count
    newest = outbox.dead_letter_page(1)[0]
    assert newest.reason == "reason 99"  # the oldest went, the newest stayed
    big = outbox.dead_letter(100, "src", "huge", b"y" * 1_000_000)
    assert outbox.dead_letter_page(1)[0].reason.endswith(
        "(payload truncated to 5000 of 1000000 bytes)"
    )
    outbox.close()
    reopened = Outbox(path, "gw", max_dead_letter_bytes=20_000)
    again = reopened.dead_letter_stats()
    assert again.dropped == dropped + big and again.bytes == reopened._letter_bytes
    reopened.close()


def test_dead_letter_text_is_stored_escaped(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", "gw")
    outbox.dead_letter(1, "dev-\ud800\x00", "bad \x1b[31mred\n", b"\x00\xff")
    ((source, reason, payload),) = outbox.dead_letters()
    assert (source, reason, payload) == ("dev-\\ud800\\x00", "bad \\x1b[31mred\\x0a", b"\x00\xff")
    outbox.close()


class Crashing:
    """A source that dies of a bug after its first readings."""

    name = "crashing"

    async def run(self, sink: ReadingSink) -> None:
        """Hand one reading over, then fail."""
        await sink([Reading("patch-0001", "battery", 80.0, "%", now_us(), 1)])
        raise RuntimeError("source bug")


async def test_a_dead_source_is_reported_not_left_a_zombie(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.app")
    async with Gateway(settings(tmp_path), [Crashing()]) as gateway:
        failure = await asyncio.wait_for(gateway.wait_failed(), 10)
        assert isinstance(failure, RuntimeError) and gateway.failure is failure
    record = next(r for r in caplog.records if "source:crashing died" in r.getMessage())
    assert record.exc_info is not None  # logged with its traceback


@pytest.mark.services
async def test_the_bridge_survives_poison_and_keeps_the_valid_readings(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    site = SiteBrokerSettings(port=mosquitto.port, site="ward", reconnect_backoff_s=0.1)
    now = now_us()

    def message(device: str = "us-1", **fields: Any) -> bytes:
        doc = {"device_id": device, "kind": "ultrasound", "seq": 1, "ts_us": now}
        doc["metrics"] = {"mains_voltage": 230.0}
        return json.dumps({**doc, **fields}).encode()

    poison = [
        ("us-1", message(seq=2**63)),
        ("us-1", message(ts_us=2**63)),
        ("us-1", message(ts_us=now + 3_600_000_000)),
        ("us-1", message(device="us-2")),  # topic names another device
        ("us-1", message(metrics={})),
        ("us-1", message(metrics={"mains_voltage": "230.6"})),
        ("us-1", b"[" * 10_000 + b"]" * 10_000),
        ("us-1", message(metrics={"mains_voltage": 229.0, "wound_ph": 7.0, "bogus": 1.0})),
    ]
    async with Gateway(settings(tmp_path, site_broker=site)) as gateway:
        assert gateway.bridge is not None
        await asyncio.wait_for(gateway.bridge.subscribed.wait(), 15)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="poisoner") as client:
            for device, payload in poison:
                await client.publish(equipment_topic("ward", device), payload, qos=1)
            await client.publish(equipment_topic("ward", "us-9"), message("us-9", seq=7), qos=1)
        await until(lambda: any(r.device_id == "us-9" for r in pending(gateway)))
        assert gateway.failure is None
        stored = sorted((r.device_id, r.metric, r.seq) for r in pending(gateway))
        # The valid reading beside the unknown and the foreign metric is kept.
        assert stored == [("us-1", "mains_voltage", 1), ("us-9", "mains_voltage", 7)]
        reasons = [reason for _, reason, _ in gateway.outbox.dead_letters()]
        assert len(reasons) == 9, reasons  # 7 whole messages + 2 readings
        assert any("topic names device 'us-1'" in r for r in reasons)
        assert any("metrics is empty" in r for r in reasons)
        assert any("reading 2: unknown metric 'bogus'" in r for r in reasons)
        assert (
            gateway.counters.value("vigil_gateway_future_skew_rejected_total", device_id="us-1")
            == 1
        )
