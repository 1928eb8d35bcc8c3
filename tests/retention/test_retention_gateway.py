"""The gateway outbox's dead letters: bounded in age as well as in bytes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.app import Gateway, GatewaySettings
from gateway.outbox import Outbox
from gateway.uplink import UplinkSettings
from infra.retention import DAY_US
from infra.time_us import now_us


def test_letters_older_than_the_age_bound_expire(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-1", max_dead_letter_age_s=90 * 86_400.0)
    now = now_us()
    outbox.dead_letter(now - 100 * DAY_US, "a", "old", b"x" * 100)
    outbox.dead_letter(now - 91 * DAY_US, "a", "old too", b"y" * 50)
    outbox.dead_letter(now - 89 * DAY_US, "b", "recent", b"z")
    before = outbox.dead_letter_stats()

    assert outbox.expire_dead_letters(now) == 2
    assert [reason for _, reason, _ in outbox.dead_letters()] == ["recent"]
    after = outbox.dead_letter_stats()
    assert after.count == 1 and after.bytes == len("b") + len("recent") + 1
    assert after.dropped == before.dropped == 0  # expiry is policy, not a loss to report
    assert outbox.expire_dead_letters(now) == 0
    # The byte count the outbox keeps in step (for the byte bound) followed.
    assert outbox._letter_bytes == after.bytes
    outbox.close()


def test_without_an_age_bound_nothing_expires(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", "gw-1")
    outbox.dead_letter(0, "a", "ancient", b"x")
    assert outbox.expire_dead_letters(now_us()) == 0
    assert len(outbox.dead_letters()) == 1
    outbox.close()


async def test_the_gateway_expires_letters_periodically(tmp_path: Path) -> None:
    settings = GatewaySettings(
        gateway_id="gw-age",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(port=1, reconnect_backoff_s=0.1, reconnect_backoff_max_s=0.2),
        dead_letter_max_age_s=3600.0,
        dead_letter_expiry_interval_s=0.05,
    )
    async with Gateway(settings) as gateway:
        outbox = gateway.outbox
        for attempt in range(2):  # at start, and again later
            outbox.dead_letter(now_us() - 2 * 3_600_000_000, "a", f"stale {attempt}", b"{")
            outbox.dead_letter(now_us(), "a", "fresh", b"{")
            deadline = time.monotonic() + 10
            while any(r.startswith("stale") for _, r, _ in outbox.dead_letters()):
                assert time.monotonic() < deadline, "stale letters not expired"
                await asyncio.sleep(0.02)
        assert [r for _, r, _ in outbox.dead_letters()] == ["fresh", "fresh"]
        assert gateway.failure is None
