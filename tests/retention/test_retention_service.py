"""`vigil service run` prunes the service store every [retention] interval_s, beside the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from infra.time_us import datetime_from_us, now_us
from service.model import Delivery
from service.store import SqliteStore
from tests.retention.seeds import seed_service
from tests.servers import PrivateMosquitto

VIGIL = Path(sys.executable).parent / "vigil"


async def _until(condition: Callable[[], bool], within_s: float = 60.0) -> None:
    """Wait until ``condition()`` holds, or fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"condition still false after {within_s}s")


@pytest.mark.services
async def test_vigil_service_run_prunes_periodically(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    db = tmp_path / "service.db"
    now = now_us()
    seed = SqliteStore(db)
    seed_service(seed, now)
    seed.close()
    env = os.environ | {
        "PYTHONFAULTHANDLER": "1",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_SERVICE__STORE_URL": f"sqlite:///{db}",
        "VIGIL_SERVICE__CLIENT_ID": "retention-service",
        "VIGIL_RETENTION__INTERVAL_S": "0.2",
    }
    proc = await asyncio.create_subprocess_exec(str(VIGIL), "service", "run", env=env, cwd=tmp_path)
    store = SqliteStore(db)

    def only_recent_left() -> bool:
        return (
            [i.key for i in store.notifications()] == ["new"]
            and [d.event_id for d in store.deliveries()] == ["new"]
            and len(store.dead_letters()) == 1
        )

    try:
        await _until(only_recent_left)
        # Not just once at start: an attempt already too old when recorded goes too.
        late = datetime_from_us(now) - timedelta(days=200)
        store.record_delivery(Delivery(event_id="late", url="mqtt://x", attempt=1, at=late))
        await _until(only_recent_left)
        assert proc.returncode is None, "the service worker exited"
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
