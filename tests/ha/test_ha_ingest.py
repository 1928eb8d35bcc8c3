"""Ingest HA: three `vigil ingest run` replicas share a group; one is SIGKILLed mid-stream.

Two gateways (in process, each simulating its own ward with distinct timestamps) feed the
shared subscription. Killing a replica loses nothing: what it had not acknowledged stays in its
persistent session, the gateways resend every batch it never confirmed (the broker deals the
resends among the group, so the live replicas store them), and storage deduplicates whatever
arrives twice. Restarted under the same replica number, the dead replica resumes its session
and consumes the backlog the broker kept for it: duplicates all, absorbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.app import Gateway, GatewaySettings
from gateway.uplink import UplinkSettings
from simulator.fleet import DEFAULT_START_US, Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.faults.harness import expected_patch_readings, reconcile
from tests.servers import PrivateMosquitto

pytestmark = pytest.mark.services

VIGIL = Path(sys.executable).with_name("vigil")
REPLICAS = (1, 2, 3)
VICTIM = 2
PATCHES = 30
TICKS = 150
DAY_US = 86_400_000_000
# Distinct start times: the two wards' reading keys (device, metric, seq, ts) never coincide.
SPECS = {
    "gw-ha-a": FleetSpec(seed=21, patches=PATCHES, equipment=0),
    "gw-ha-b": FleetSpec(seed=22, patches=PATCHES, equipment=0, start_us=DEFAULT_START_US + DAY_US),
}
STORED = "$SYS/broker/store/messages/count"
RETAINED = "$SYS/broker/retained messages/count"
RESENT = "vigil_gateway_batches_resent_on_timeout_total"


@pytest.fixture
def broker() -> Iterator[PrivateMosquitto]:
    """A private Mosquitto publishing its $SYS statistics every second."""
    mosquitto = PrivateMosquitto()
    mosquitto.conf.write_text(mosquitto.conf.read_text() + "sys_interval 1\n")
    mosquitto.start()
    yield mosquitto
    mosquitto.cleanup()


def _start_replica(tmp: Path, port: int, dsn: str, replica: int) -> subprocess.Popen[bytes]:
    """`vigil ingest run` as replica ``replica`` of the shared group, logging to its own file."""
    env = os.environ | {
        "VIGIL_CONFIG": str(tmp / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(port),
        "VIGIL_INGEST__STORAGE_URL": dsn,
        "VIGIL_INGEST__SHARED_GROUP": "ingest",
        "VIGIL_INGEST__MAX_MESSAGES_PER_WRITE": "8",
    }
    with _log(tmp, replica).open("ab") as log:
        return subprocess.Popen(
            [str(VIGIL), "-v", "ingest", "run", "--no-rules", "--replica", str(replica)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _log(tmp: Path, replica: int) -> Path:
    return tmp / f"ingest-{replica}.log"


def _subscribed_times(tmp: Path, replica: int) -> int:
    """How often replica ``replica`` has subscribed (per its log), under its own client id."""
    text = _log(tmp, replica).read_text(errors="replace") if _log(tmp, replica).exists() else ""
    return text.count(f"as vigil-ingest-{replica}, subscribed to $share/ingest/")


async def _wait_for(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Poll ``condition`` (in a thread: it may query the database) until it holds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _gateways(
    port: int, tmp: Path, sources: list[SimulatedFleet]
) -> AsyncIterator[list[Gateway]]:
    """Both gateways running their simulated wards into their outboxes and up the uplink."""
    gateways = []
    for gateway_id, source in zip(SPECS, sources, strict=True):
        # A second without a confirmation and a batch is resent: to whichever replica is dealt it.
        uplink = UplinkSettings(port=port, batch_max_readings=100, confirm_timeout_s=1.0)
        settings = GatewaySettings(gateway_id, tmp / f"{gateway_id}.db", uplink=uplink)
        gateways.append(Gateway(settings, [source]))
    async with contextlib.AsyncExitStack() as stack:
        for gateway in gateways:
            await stack.enter_async_context(gateway)
        yield gateways


class BrokerHeld:
    """Messages the broker holds for sessions (queued or in flight), from its $SYS statistics."""

    def __init__(self) -> None:
        self.stats: dict[str, int] = {}

    def held(self) -> int | None:
        """Stored messages that are not retained ($SYS topics are), once both are known."""
        if STORED not in self.stats or RETAINED not in self.stats:
            return None
        return self.stats[STORED] - self.stats[RETAINED]

    async def follow(self, port: int) -> None:
        """Keep the statistics current until cancelled."""
        async with aiomqtt.Client("127.0.0.1", port, identifier="ha-sys-watch") as client:
            await client.subscribe([(STORED, 0), (RETAINED, 0)])
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                self.stats[str(message.topic)] = int(message.payload)


async def test_three_replicas_one_sigkilled_mid_stream_lose_and_duplicate_nothing(
    broker: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    expected = [expected_patch_readings(spec, TICKS) for spec in SPECS.values()]
    expected_count = sum(e.count for e in expected)
    expected_sum = sum(e.value_sum for e in expected)
    broker_held = BrokerHeld()
    watch = asyncio.create_task(broker_held.follow(broker.port))
    replicas = {r: _start_replica(tmp_path, broker.port, timescale_dsn, r) for r in REPLICAS}
    try:
        await _wait_for(
            lambda: all(_subscribed_times(tmp_path, r) == 1 for r in REPLICAS), 60, "subscribed"
        )
        sources = [SimulatedFleet(Fleet(spec), TICKS, tick_wall_s=0.04) for spec in SPECS.values()]
        async with _gateways(broker.port, tmp_path, sources) as gateways:
            # Mid-stream: some readings stored, the wards still producing.
            await _wait_for(
                lambda: reconcile(timescale_dsn).count >= expected_count // 4, 120, "a quarter"
            )
            replicas[VICTIM].send_signal(signal.SIGKILL)
            replicas[VICTIM].wait()
            stored_at_kill = reconcile(timescale_dsn).count
            produced = [s.ticks_done for s in sources]
            assert stored_at_kill < expected_count, "all stored before the kill: nothing tested"

            await asyncio.wait_for(asyncio.gather(*(g.sources_done() for g in gateways)), 120)
            await asyncio.wait_for(asyncio.gather(*(g.drained() for g in gateways)), 180)
            tally = reconcile(timescale_dsn)
            resent = sum(g.counters.value(RESENT) for g in gateways)
            # What the broker still holds: the dead replica's share, queued in its session.
            await _wait_for(lambda: broker_held.held() is not None, 10, "$SYS statistics")
            backlog = broker_held.held()

            # The dead replica comes back under its own id and drains its session.
            replicas[VICTIM] = _start_replica(tmp_path, broker.port, timescale_dsn, VICTIM)
            await _wait_for(lambda: _subscribed_times(tmp_path, VICTIM) == 2, 60, "resubscribed")
            await _wait_for(lambda: broker_held.held() == 0, 60, "backlog consumed")
            after_restart = reconcile(timescale_dsn)
        alive = {r: p.poll() is None for r, p in replicas.items()}
    finally:
        for proc in replicas.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {r: await asyncio.to_thread(p.wait, 15) for r, p in replicas.items()}
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch

    print(
        f"expected {expected_count} readings from 2 gateways; replica {VICTIM} SIGKILLed with "
        f"{stored_at_kill} stored (ticks produced {produced}/{TICKS}); after the drain: stored "
        f"{tally.count}, lost {expected_count - tally.count}, duplicate keys "
        f"{tally.duplicate_keys}, readings in claimed batches {tally.batch_readings}, batches "
        f"resent on timeout {resent:.0f}; broker backlog for the dead replica {backlog}; after "
        f"its restart: stored {after_restart.count}, duplicate keys {after_restart.duplicate_keys}"
    )
    assert all(alive.values()), f"a replica died: {alive}"
    assert codes == dict.fromkeys(REPLICAS, 0), codes
    for outcome in (tally, after_restart):
        assert outcome.count == expected_count, "readings lost"
        assert outcome.duplicate_keys == 0
        assert outcome.batch_readings == expected_count, "a reading stored in two claimed batches"
        assert math.isclose(outcome.value_sum, expected_sum, rel_tol=1e-12)
