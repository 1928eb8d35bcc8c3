"""BlueZ's first-week failures, injected into the virtual BlueZ: the gateway keeps reading.

Each test fails on a gateway that lets a scanner error end the BLE source, never notices a deaf
scanner, connects to every patch at once, ignores links BlueZ already holds or stamps readings
with a wrong clock. Time is the radio's simulated clock; every wait has a deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from gateway.ble import Fault, RejectReason
from gateway.ble.bluez import BlueZRestarted
from gateway.ble.scan_control import ScannerStartError
from simulator.bleak_backend import BlueZErrorForm, Stall, VirtualPatch, VirtualRadio
from tests.bleak.test_bleak_harness import FAST, Harness, running, started
from tests.waiting import wait_until_async


async def play_until(
    h: Harness,
    predicate: Callable[[], object],
    within_s: float,
    what: str,
    step_s: float = 0.5,
    wall_step_s: float = 0.002,
) -> float:
    """Advance simulated time until ``predicate`` holds; fail after ``within_s`` simulated s.
    Returns the simulated seconds it took. ``wall_step_s`` paces simulated time for what runs
    on the wall clock (bleak-retry-connector's back-offs between connect attempts)."""
    start = h.radio.now_s
    while not predicate():
        if h.radio.now_s - start >= within_s:
            raise AssertionError(f"{what}: not within {within_s} simulated s")
        await h.play(step_s, step_s=step_s, wall_step_s=wall_step_s)
    return h.radio.now_s - start


def source_alive(h: Harness) -> bool:
    return h.task is not None and not h.task.done()


def heard_after(h: Harness, patch: VirtualPatch, t_s: float) -> bool:
    """Whether a reading of ``patch`` received after simulated second ``t_s`` was delivered."""
    since_us = h.radio.start_us + round(t_s * 1e6)
    return any(r.ts_us > since_us for r in h.of(patch))


async def test_not_ready_for_the_first_starts_then_scanning_recovers() -> None:
    """bluetoothd up before the adapter is powered (rfkill, slow firmware): NotReady x6."""

    def not_ready(radio: VirtualRadio, _patches: list[VirtualPatch]) -> None:
        radio.default_adapter.fail_starts(BlueZErrorForm.NOT_READY, 6)

    async with running(2, connectable=0, prepare=not_ready, wait_scanning=False) as h:
        await started(h.acquisition)
        await h.play(5.0)
        adapter = h.radio.default_adapter
        counters = h.acquisition.counters
        assert source_alive(h)
        assert counters.value("vigil_ble_scanner_start_failures_total") == 6
        assert adapter.starts == 7 and adapter.power_cycles >= 1  # attempt 2 resets the adapter
        assert all(h.of(p) for p in h.patches)
        faults = h.acquisition.faults
        assert faults.raised(Fault.SCANNER_FAILING) == 1
        assert Fault.SCANNER_FAILING not in faults.active  # cleared once it started


async def test_a_scanner_that_never_starts_ends_the_source_with_a_fault() -> None:
    """Past the limit the source gives up, so the gateway exits non-zero for systemd."""

    def dead(radio: VirtualRadio, _patches: list[VirtualPatch]) -> None:
        radio.default_adapter.fail_starts(BlueZErrorForm.NOT_READY, 10_000)

    config = replace(FAST, scanner_max_failures=3, scanner_start_attempts=2)
    with pytest.raises(ScannerStartError, match="rfkill"):
        async with running(1, prepare=dead, wait_scanning=False, config=config) as h:
            task = h.task
            assert task is not None
            await wait_until_async(task.done, 10, "the source to give up")
            assert h.acquisition.faults.raised(Fault.SCANNER_FAILING) == 1
            assert h.radio.default_adapter.starts == 6


async def test_in_progress_on_the_third_stop_of_the_home_kit_duty_cycle() -> None:
    """10 s of scanning every 60 s: the third StopDiscovery is refused InProgress and leaves
    discovery wedged (bluez#807); the next window power-cycles the adapter and hears again."""

    def wedge(radio: VirtualRadio, _patches: list[VirtualPatch]) -> None:
        radio.default_adapter.fail_stop(3, BlueZErrorForm.IN_PROGRESS, stuck=True)

    config = replace(FAST, scan_window_s=10.0, scan_every_s=60.0)
    async with running(1, connectable=0, prepare=wedge, config=config) as h:
        patch = h.patches[0]
        await h.play(300.0, step_s=1.0)  # five windows
        adapter = h.radio.default_adapter
        assert source_alive(h)
        assert adapter.stops >= 4
        assert h.acquisition.counters.value("vigil_ble_scanner_stop_failures_total") == 1
        assert adapter.power_cycles == 1
        for window_start in (180.0, 240.0):  # after the wedged stop, windows still hear
            assert heard_after(h, patch, window_start)
        assert not h.acquisition.faults.active


async def test_a_silent_stall_is_one_gateway_fault_and_scanning_restarts() -> None:
    """Discovering stays true, nothing is heard: restart within the watchdog's time, readings
    resume, one gateway-health event, and no patient is declared gone."""
    config = replace(FAST, watchdog_silence_s=20.0, gone_after_s=30.0)
    async with running(3, connectable=0, config=config) as h:
        await h.play(5.0)
        h.radio.default_adapter.stall = Stall.RESTART
        stalled_at = h.radio.now_s
        took = await play_until(
            h,
            lambda: h.acquisition.counters.value("vigil_ble_scanner_restarts_total") >= 1,
            30.0,
            "a scanner restart",
        )
        assert took <= 20.0 + 2.0
        await h.play(10.0)
        for patch in h.patches:
            assert heard_after(h, patch, stalled_at + took)
        faults = h.acquisition.faults
        assert faults.raised(Fault.SCANNER_SILENT) == 1 and not faults.active
        assert h.gone == [] and not h.acquisition.gone
        assert h.acquisition.counters.value("vigil_ble_scanner_restarts_total") == 1


async def test_a_stall_a_restart_does_not_clear_is_power_cycled() -> None:
    config = replace(FAST, watchdog_silence_s=20.0, gone_after_s=30.0)
    async with running(2, connectable=0, config=config) as h:
        await h.play(5.0)
        h.radio.default_adapter.stall = Stall.POWER_CYCLE
        await play_until(
            h, lambda: h.radio.default_adapter.power_cycles == 1, 60.0, "a power cycle"
        )
        resumed = h.radio.now_s
        await h.play(5.0)
        assert all(heard_after(h, p, resumed) for p in h.patches)
        assert h.acquisition.faults.raised(Fault.SCANNER_SILENT) == 1
        assert h.gone == []  # 40 s of deafness, longer than gone_after_s: nobody blamed


async def test_all_patches_silent_at_once_is_a_gateway_fault_not_patient_events() -> None:
    """When the watchdog cannot tell (it is set too patient here), every patch crossing the
    silence limit in the same sweep is still one gateway fault."""
    config = replace(FAST, watchdog_silence_s=10_000.0, gone_after_s=20.0)
    async with running(3, connectable=0, config=config) as h:
        await h.play(3.0)
        h.radio.default_adapter.stall = Stall.POWER_CYCLE
        await play_until(
            h,
            lambda: Fault.ALL_PATCHES_SILENT in h.acquisition.faults.active,
            30.0,
            "the all-silent fault",
        )
        assert h.gone == []  # no patient event
        h.radio.bluez.power(h.radio.default_adapter, False)
        h.radio.bluez.power(h.radio.default_adapter, True)  # a technician power-cycles it
        await play_until(
            h,
            lambda: Fault.ALL_PATCHES_SILENT not in h.acquisition.faults.active,
            10.0,
            "the fault to clear",
        )
        assert h.acquisition.faults.raised(Fault.ALL_PATCHES_SILENT) == 1


async def test_adapter_removed_and_recreated_as_hci1_scanning_resumes() -> None:
    async with running(3, connectable=1) as h:
        await h.play(5.0)
        linked = h.patches[0]
        assert linked.address in h.acquisition.connected
        mac = h.radio.default_adapter.address
        h.radio.bluez.recreate_adapter("hci0", "hci1")  # USB reset, bluetoothd restart
        back = h.radio.now_s
        await play_until(
            h,
            lambda: (
                h.acquisition.runners.get(mac) is not None
                and h.acquisition.runners[mac].name == "hci1"
                and h.acquisition.scanning
            ),
            10.0,
            "a scanner on hci1",
        )
        await play_until(
            h, lambda: linked.address in h.acquisition.connected, 10.0, "the link again"
        )
        await h.play(5.0)
        assert list(h.acquisition.runners) == [mac]  # one adapter, followed by its MAC
        assert all(heard_after(h, p, back + 1.0) for p in h.patches)
        assert h.radio.links[linked.address].adapter.name == "hci1"


async def test_a_bluetoothd_restart_ends_the_source_after_handing_over_its_readings() -> None:
    """org.bluez changed owner: bleak's mirror of BlueZ is stale, so the source ends (and the
    gateway restarts fresh) — but what it decoded reaches the sink first."""
    with pytest.raises(BlueZRestarted):
        async with running(2, connectable=1) as h:
            await h.play(5.0)
            before = len(h.delivered)
            h.radio.bluez.restart_daemon()
            task = h.task
            assert task is not None
            await wait_until_async(task.done, 10, "the source to end")
            assert len(h.delivered) >= before and h.acquisition.pending == 0


async def test_five_patches_one_pending_connect_per_controller_all_linked() -> None:
    """BlueZ answers a second concurrent LE connect with InProgress: the gateway never makes
    one, connects the strongest first, and a slot held by another process only delays."""

    def crowded(radio: VirtualRadio, patches: list[VirtualPatch]) -> None:
        radio.connect_latency_s = 0.02  # wall: connects overlap if the gateway lets them
        radio.foreign_link("F0:0D:00:00:00:01")  # a headset linked by another process

    async with running(5, prepare=crowded) as h:
        adapter = h.radio.default_adapter
        # Connects take wall time here: pace simulated time so a loaded machine keeps up.
        four = lambda: len(h.acquisition.connected) == 4  # noqa: E731
        await play_until(h, four, 10.0, "four links", wall_step_s=0.05)
        await h.play(5.0)
        assert len(h.acquisition.connected) == 4  # the fifth waits: BlueZ counts the headset
        assert h.acquisition.counters.value("vigil_ble_slot_waits_total") >= 1
        h.radio.bluez.hangup("/org/bluez/hci0/dev_F0_0D_00_00_00_01")  # the headset leaves
        took = await play_until(
            h, lambda: len(h.acquisition.connected) == 5, 5.0, "the fifth link", wall_step_s=0.05
        )
        assert took <= 3.0  # no per-patch backoff after the wait
        assert adapter.max_concurrent_connects == 1
        assert h.acquisition.counters.value("vigil_ble_link_failures_total") == 0
        strongest = max(h.patches, key=lambda p: p.rssi)
        assert h.radio.patch(strongest.address).address in h.acquisition.connected


async def test_a_controller_refusal_for_lack_of_room_is_not_a_patch_failure() -> None:
    """The controller has fewer slots than configured (a link made behind BlueZ's back): the
    BlueZ-form refusal makes the patch wait for a slot, without backoff."""
    async with running(5) as h:
        adapter = h.radio.default_adapter
        adapter.max_connections = 4
        await play_until(h, lambda: len(h.acquisition.connected) == 4, 30.0, "four links")
        await wait_until_async(
            lambda: h.acquisition.runners[adapter.address].links.capacity == 4,
            15,
            "the refusal to teach the adapter's capacity",
        )
        await h.play(3.0)
        assert h.acquisition.counters.value("vigil_ble_link_failures_total") == 0
        assert len(h.acquisition.connected) == 4
        adapter.max_connections = 5
        h.radio.drop(next(iter(h.radio.links)))  # a slot frees: the queue is looked at again
        # A refused connect takes bleak-retry-connector ~2 wall seconds of retries: pace time.
        await play_until(
            h, lambda: len(h.acquisition.connected) == 5, 20.0, "five links", wall_step_s=0.25
        )
        assert h.acquisition.counters.value("vigil_ble_link_failures_total") == 0


async def test_a_stale_link_is_adopted_and_a_never_heard_patch_goes_gone_on_time() -> None:
    """A SIGKILLed gateway left patch 0 linked (so it does not advertise); patch 1 was never
    heard since the start: it is declared gone after gone_after_s, not never."""

    def leftovers(radio: VirtualRadio, patches: list[VirtualPatch]) -> None:
        radio.stale_link(patches[0].address)
        patches[1].present = False

    config = replace(FAST, gone_after_s=30.0)
    async with running(2, prepare=leftovers, config=config) as h:
        stale, absent = h.patches
        await play_until(h, lambda: h.of(stale, "wound_ph"), 5.0, "frames on the adopted link")
        counters = h.acquisition.counters
        assert counters.value("vigil_ble_stale_links_total", action="adopted") == 1
        assert h.radio.connects == 1  # adopted, not closed and linked again
        assert h.gone == []
        took = await play_until(h, lambda: h.gone, 40.0, "the absent patch gone", step_s=0.25)
        assert h.gone == [absent.address]
        assert 29.0 <= h.radio.now_s <= 31.5, took


async def test_fake_hwclock_then_ntp_sync_readings_are_held_then_restamped() -> None:
    """Booted 3 days behind (fake-hwclock after a power loss): nothing leaves with that time;
    at the NTP jump every held reading gets its true receipt time."""

    def behind(radio: VirtualRadio, _patches: list[VirtualPatch]) -> None:
        radio.gateway_clock.fake_hwclock(3 * 86_400)

    async with running(2, connectable=1, prepare=behind) as h:
        await h.play(10.0)
        acq = h.acquisition
        assert h.delivered == []
        held = acq.delivery.held.count
        assert held > 0 and acq.counters.value("vigil_ble_held_readings") == held
        assert Fault.CLOCK_UNTRUSTED in acq.faults.active
        h.radio.gateway_clock.ntp_sync()
        await play_until(h, lambda: acq.delivery.held.count == 0, 5.0, "the release")
        await h.play(2.0)
        # What was held, and what came in before the next clock check, re-stamped.
        assert acq.counters.value("vigil_ble_restamped_readings_total") >= held
        assert Fault.CLOCK_UNTRUSTED not in acq.faults.active
        linked = h.patches[0]
        by_counter = {e.counter: e for e in linked.emissions}
        notified = [r for r in h.of(linked) if by_counter[r.seq].notified]
        assert notified
        for r in notified:  # re-stamped from the monotonic clock: the true receipt time
            assert abs(r.ts_us - by_counter[r.seq].ts_us) <= 1, r
        floor = h.radio.start_us - 60_000_000
        assert all(r.ts_us > floor for r in h.delivered)  # none with the 3-day-old time


async def test_readings_held_across_a_reboot_are_dead_lettered_not_guessed() -> None:
    letters: list[tuple[int, str]] = []

    async def dead_letter(readings: object, reason: str) -> None:
        letters.append((len(readings), reason))  # type: ignore[arg-type]

    def behind(radio: VirtualRadio, _patches: list[VirtualPatch]) -> None:
        radio.gateway_clock.fake_hwclock(3600)

    async with running(1, connectable=0, prepare=behind) as h:
        h.acquisition.use_dead_letters(dead_letter)
        await h.play(5.0)
        held = h.acquisition.delivery.held.count
        assert held > 0
        h.radio.gateway_clock.reboot("another-boot")  # as if stored and read back after reboot
        h.radio.gateway_clock.ntp_sync()
        await play_until(h, lambda: letters, 5.0, "the dead letters")
        assert sum(n for n, _ in letters) == held
        assert "time is unknown" in letters[0][1]


async def test_device_information_failing_does_not_block_notifications() -> None:
    def locked(_radio: VirtualRadio, patches: list[VirtualPatch]) -> None:
        patches[0].refuse_device_information()

    async with running(1, prepare=locked) as h:
        await h.play(5.0)
        patch = h.patches[0]
        assert len(h.of(patch, "wound_ph")) >= 4  # frames stream from the first measurement
        assert patch.address not in h.acquisition.device_info
        counters = h.acquisition.counters
        assert counters.value("vigil_ble_gatt_read_failures_total", what="device_information") >= 1
        assert patch.address in h.acquisition.connected
        assert h.acquisition.battery[patch.address].percent > 0  # battery still read


async def test_doubled_notifications_are_duplicates_not_replays() -> None:
    async with running(1) as h:
        patch = h.patches[0]
        await h.play(3.0)
        patch.double_next(5)
        await h.play(6.0)
        counters = h.acquisition.counters
        assert counters.rejected(RejectReason.REPLAYED) == 0
        assert counters.value("vigil_ble_duplicate_frames_total") == 5
        assert patch.address in h.acquisition.connected
        keys = [r.key for r in h.delivered]
        assert len(keys) == len(set(keys))
