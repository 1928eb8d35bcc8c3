"""Rule packs end to end: simulator → gateway → Mosquitto → ingest (TimescaleDB) → rules.

One scripted fault per pack entry on one device of a small fleet; the right rule must fire on
that device only, land in the database and reach a subscriber of the alerts topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from contract import AlertEvent, AlertTransition
from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from infra.telemetry.timescale import TimescaleStore
from ingest.worker import IngestSettings, IngestWorker
from rules import DeviceInfo, RuleEngine, load_pack
from rules.runtime import RuleRuntime, RuntimeSettings
from rules.worker import RulesWorker, RulesWorkerSettings
from simulator.faults import Fault, FaultKind
from simulator.fleet import Fleet, FleetSpec
from simulator.runner import SimulatedFleet
from tests.alert_listener import alert_listener
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

pytestmark = pytest.mark.services

RULES = load_pack("dressings") + load_pack("equipment")
HOUR = 3600.0


@dataclass
class Outcome:
    """What one scenario produced at each end of the path."""

    events: list[AlertEvent]  # as the runtime delivered them
    stored: list[AlertEvent]  # read back from TimescaleDB
    received: list[AlertEvent]  # as a subscriber of the alerts topic got them
    snapshot: Path

    def raised(self) -> set[tuple[str, str]]:
        """(device, rule) pairs that were raised."""
        return {
            (e.device_id, e.rule_id) for e in self.events if e.transition is AlertTransition.RAISED
        }


async def run_scenario(
    broker: PrivateMosquitto,
    dsn: str,
    workdir: Path,
    faults: tuple[Fault, ...],
    *,
    ticks: int,
    tick_s: float,
    patches: int = 4,
    equipment: int = 2,
    separate_worker: bool = False,
) -> Outcome:
    """Drive the fleet through the whole data path and collect alerts at every end."""
    port = broker.port
    fleet = Fleet(
        FleetSpec(seed=11, patches=patches, equipment=equipment, faults=faults, tick_s=tick_s)
    )
    snapshot = workdir / "rules.snap"
    store = TimescaleStore(dsn)
    store.migrate()
    rules_store = TimescaleStore(dsn)  # the rules side has its own connection
    received: list[AlertEvent] = []
    settings = RuntimeSettings(snapshot_path=snapshot, data_clock=True)
    # The registry says what kind each piece of equipment is (probe rules are for ultrasound).
    registry = {d.device_id: DeviceInfo(kind=str(d.kind)) for d in fleet.equipment}
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(store.close)
        stack.callback(rules_store.close)
        await stack.enter_async_context(alert_listener(port, received))
        if separate_worker:
            runtime = await stack.enter_async_context(
                RuleRuntime(RULES, registry, rules_store, None, settings)
            )
            worker = RulesWorker(RulesWorkerSettings(port=port, client_id="e2e-rules"), runtime)
            worker_task = asyncio.create_task(worker.run())
            stack.push_async_callback(_cancel, worker_task)
            await asyncio.wait_for(worker.subscribed.wait(), 10)
            hook = None
        else:
            publisher = await stack.enter_async_context(
                aiomqtt.Client("127.0.0.1", port, identifier="e2e-rules-publisher")
            )
            runtime = await stack.enter_async_context(
                RuleRuntime(RULES, registry, rules_store, publisher, settings)
            )
            hook = runtime.on_stored
        ingest = IngestWorker(
            IngestSettings(port=port, client_id="e2e-ingest"), store, on_stored=hook
        )
        stack.push_async_callback(_cancel, asyncio.create_task(ingest.run()))
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        gateway = Gateway(
            GatewaySettings(
                gateway_id="gw-e2e",
                outbox_path=workdir / "outbox.db",
                uplink=UplinkSettings(port=port, linger_s=0.01),
                site_broker=SiteBrokerSettings(port=port, site=fleet.spec.site),
            )
        )
        assert gateway.bridge is not None
        gateway.sources.insert(
            0,
            SimulatedFleet(
                fleet,
                ticks,
                0.0,
                site_broker=("127.0.0.1", port),
                start_after=gateway.bridge.subscribed,
            ),
        )
        async with gateway:
            await gateway.sources_done()
            # Equipment readings may still be on their way through the site broker and bridge.
            await wait_until_async(
                lambda: runtime.counters.readings >= fleet.tally.readings, 60, "every reading"
            )
        # Silence is judged once every path has caught up: with tick_wall_s=0 patch readings
        # run simulated hours ahead of bridged equipment readings, so a tick mid-run at the
        # newest timestamp would call the lagging equipment silent.
        await runtime.tick()
        await wait_until_async(
            lambda: len(received) >= runtime.counters.published, 60, "every published alert"
        )
    stored = TimescaleStore(dsn)
    with stored:
        events = stored.fetch_alert_events()
    return Outcome(list(runtime.recent), events, received, snapshot)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def check(outcome: Outcome, device: str, rule: str) -> None:
    """The rule raised on the device only, was stored and published; no other device alerted."""
    assert (device, rule) in outcome.raised(), sorted(outcome.raised())
    others = {(d, r) for d, r in outcome.raised() if d != device}
    assert not others, f"false alerts on healthy devices: {sorted(others)}"
    key = {(e.device_id, e.rule_id, e.transition, e.at_us) for e in outcome.events}
    assert {(e.device_id, e.rule_id, e.transition, e.at_us) for e in outcome.stored} == key
    assert {(e.device_id, e.rule_id, e.transition, e.at_us) for e in outcome.received} == key
    stored = next(e for e in outcome.stored if e.rule_id == rule and e.device_id == device)
    assert stored.evidence["rule"] == rule and stored.evidence["source"]


SCENARIOS = {
    # name: (fault, ticks, simulated seconds per tick, rule expected on the faulty device)
    "saturated_dressing": (
        Fault("patch-0001", FaultKind.SATURATION, 1 * HOUR),
        192,
        300.0,
        "dressing.exudate.saturated",
    ),
    "detached_patch": (
        Fault("patch-0002", FaultKind.DETACH, 1 * HOUR),
        100,
        60.0,
        "dressing.patch.off_skin",
    ),
    "mains_sag": (
        Fault("us-000", FaultKind.MAINS_SAG, 0.5 * HOUR, 0.5 * HOUR),
        100,
        60.0,
        "equipment.mains.out_of_band",
    ),
    "ng_fault": (Fault("endo-001", FaultKind.NG_FAULT, 0.5 * HOUR), 60, 60.0, "equipment.ng.high"),
    # a drop below the probe's own 30-day median needs 2 days of daily means first
    "degrading_probe": (
        Fault("us-000", FaultKind.PROBE_DEGRADATION, 50 * HOUR),
        280,
        720.0,
        "equipment.probe.degrading",
    ),
    "error_burst": (
        Fault("endo-001", FaultKind.ERROR_BURST, 0.5 * HOUR, 0.25 * HOUR),
        60,
        60.0,
        "equipment.errors.repeating",
    ),
    "silent_patch": (
        Fault("patch-0003", FaultKind.SILENCE, 0.5 * HOUR),
        80,
        60.0,
        "dressing.patch.silent",
    ),
    "silent_equipment": (
        Fault("us-000", FaultKind.SILENCE, 0.5 * HOUR),
        60,
        60.0,
        "equipment.offline",
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_e2e_rules_scenario(
    name: str, mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    fault, ticks, tick_s, rule = SCENARIOS[name]
    outcome = await run_scenario(
        mosquitto, timescale_dsn, tmp_path, (fault,), ticks=ticks, tick_s=tick_s
    )
    check(outcome, fault.device_id, rule)


async def test_e2e_rules_infection_raises_the_composite(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    # The infection rules compare with the wound's baseline (24 h after the first 2 h), so the
    # infection starts after that.
    fault = Fault("patch-0000", FaultKind.INFECTION, 28 * HOUR)
    outcome = await run_scenario(
        mosquitto, timescale_dsn, tmp_path, (fault,), ticks=504, tick_s=300.0
    )
    for rule in (
        "dressing.temp.rise",
        "dressing.ph.rise",
        "dressing.infection.suspected",
        "dressing.infection_signs",
    ):
        check(outcome, "patch-0000", rule)
    # The snapshot written on close carries the active alert into the next run.
    restored = RuleEngine.restore(RULES, None, outcome.snapshot.read_bytes())
    assert restored.active("dressing.infection_signs") == ["patch-0000"]


async def test_e2e_rules_broker_fed_worker(
    mosquitto: PrivateMosquitto, timescale_dsn: str, tmp_path: Path
) -> None:
    fault = Fault("us-000", FaultKind.MAINS_SAG, 0.5 * HOUR, 0.5 * HOUR)
    outcome = await run_scenario(
        mosquitto, timescale_dsn, tmp_path, (fault,), ticks=100, tick_s=60.0, separate_worker=True
    )
    check(outcome, "us-000", "equipment.mains.out_of_band")
    cleared = [e for e in outcome.events if e.transition is AlertTransition.CLEARED]
    # the undervoltage event ends with the sag; the 10-minute mean clears with the next interval
    assert [(e.device_id, e.rule_id) for e in cleared] == [
        ("us-000", "equipment.mains.undervoltage_event"),
        ("us-000", "equipment.mains.out_of_band"),
    ]
