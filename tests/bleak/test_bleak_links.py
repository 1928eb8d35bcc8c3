"""Links in the field: stale GATT caches, mute patches, another process's connect, passive scans."""

from __future__ import annotations

from dataclasses import replace

from contract.health import BleHealth, GatewayHealth, decode_health
from gateway.ble import RejectReason
from simulator.bleak_backend import VirtualPatch, VirtualRadio
from simulator.faults import Fault, FaultKind
from tests.bleak.test_bleak_bluez_faults import play_until
from tests.bleak.test_bleak_harness import FAST, running


async def test_a_stale_gatt_cache_is_cleared_once_then_the_patch_streams() -> None:
    """A firmware update changed the GATT table; BlueZ still resolves the old one (no
    measurement characteristic): clear the device's cache once, link again on its advert."""

    def updated(radio: VirtualRadio, patches: list[VirtualPatch]) -> None:
        radio.stale_gatt_cache(patches[0].address)

    async with running(1, prepare=updated) as h:
        patch = h.patches[0]
        await play_until(h, lambda: h.of(patch, "wound_ph"), 15.0, "frames after the clear")
        counters = h.acquisition.counters
        assert counters.value("vigil_ble_gatt_cache_clears_total") == 1
        assert counters.value("vigil_ble_link_failures_total") == 0
        assert ("/org/bluez/hci0", "org.bluez.Adapter1", "RemoveDevice") in h.radio.bluez._bus.calls


async def test_a_mute_patch_on_a_live_link_is_hung_up_and_frees_its_slot() -> None:
    """A patch that stays connected but sends no authentic frame for k measurement intervals
    loses its link, so the one slot goes to a patch that talks."""

    def mute_first(_radio: VirtualRadio, patches: list[VirtualPatch]) -> None:
        patches[0].rssi = -40  # the strongest: linked first
        patches[0].model.faults.append(Fault(patches[0].device_id, FaultKind.SILENCE, 5.0))

    config = replace(FAST, max_connections=1, link_silence_intervals=5.0, measure_every_s=1.0)
    async with running(2, prepare=mute_first, config=config) as h:
        mute, talker = h.patches
        await play_until(h, lambda: mute.address in h.acquisition.connected, 5.0, "first link")
        took = await play_until(
            h, lambda: talker.address in h.acquisition.connected, 20.0, "the slot to pass on"
        )
        assert took <= 5.0 + 5.0 + 2.0
        assert h.acquisition.counters.value("vigil_ble_silent_hangups_total") >= 1
        await h.play(3.0)
        assert h.of(talker, "wound_ph")


async def test_another_process_connecting_gets_in_progress_cleaned_up_once() -> None:
    """Another process's LE connect is pending on the controller: ours is refused InProgress;
    the gateway closes stale links and clears the device cache once, then links on an advert,
    without a per-patch backoff."""

    def busy(radio: VirtualRadio, _patches: list[VirtualPatch]) -> None:
        radio.default_adapter.foreign_connects = 1

    async with running(1, prepare=busy) as h:
        patch = h.patches[0]
        await play_until(
            h,
            lambda: patch.address in h.acquisition.connected,
            10.0,
            "the link",
            wall_step_s=0.05,  # bleak-retry-connector waits 0.25 wall s after the refusal
        )
        counters = h.acquisition.counters
        assert counters.value("vigil_ble_gatt_cache_clears_total") == 1
        assert counters.value("vigil_ble_link_failures_total") == 0
        assert h.radio.default_adapter.foreign_connects == 0


async def test_passive_scanning_links_paired_patches_without_the_scan_response() -> None:
    """Passive scanning never sees the scan response (the 128-bit UUID): the gateway tries a
    link with every paired patch it hears and backs off the advertising-only ones."""
    config = replace(FAST, scanning_mode="passive")
    async with running(2, connectable=1, config=config) as h:
        linkable, advert_only = h.patches
        await play_until(h, lambda: linkable.address in h.acquisition.connected, 10.0, "a link")
        await h.play(5.0)
        assert h.of(linkable, "wound_ph") and h.of(advert_only, "wound_temp")
        assert advert_only.address not in h.acquisition.connected
        assert h.acquisition.counters.rejected(RejectReason.UNKNOWN_DEVICE) == 0


async def test_health_summarises_adapters_links_slots_and_rejects() -> None:
    async with running(3, connectable=2) as h:
        await h.play(5.0)
        health = h.acquisition.health()
        assert isinstance(health, BleHealth)
        (adapter,) = health.adapters
        assert adapter.address == h.radio.default_adapter.address and adapter.name == "hci0"
        assert adapter.scanning and adapter.discovering and adapter.powered
        assert adapter.links == 2 and adapter.slots == 5 and adapter.slots_free == 3
        assert health.links == 2 and health.patches_paired == 3 and health.patches_gone == 0
        assert set(health.rejects) == {r.value for r in RejectReason}
        message = GatewayHealth(
            gateway_id="gw-1", at_us=h.radio.now_us(), uptime_s=5.0, outbox_pending=0, ble=health
        )
        assert decode_health(message.encode()) == message
