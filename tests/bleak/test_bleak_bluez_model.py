"""The virtual BlueZ behaves as BlueZ does where the gateway depends on it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError
from bleak_retry_connector import BleakSlotManager, clear_cache, close_stale_connections

from contract.ble import uuids
from simulator.bleak_backend import (
    BlueZErrorForm,
    VirtualBleakClient,
    VirtualBleakScanner,
    VirtualRadio,
    populate,
)
from simulator.bleak_backend.air import LEGACY_MAX, advert_pdu, parse, scan_response
from simulator.fleet import FleetSpec

Heard = list[tuple[BLEDevice, AdvertisementData]]


def world(patches: int = 1, **kwargs: int) -> VirtualRadio:
    radio = VirtualRadio()
    populate(radio, FleetSpec(patches=patches), **kwargs)
    return radio


def scanner(radio: VirtualRadio, heard: Heard, mode: str = "active") -> BleakScanner:
    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        heard.append((device, adv))

    bluez = {"or_patterns": [OrPattern(0, AdvertisementDataType.FLAGS, b"\x06")]}
    return BleakScanner(
        on_advert,
        scanning_mode=mode,  # type: ignore[arg-type]
        bluez=bluez if mode == "passive" else {},  # type: ignore[arg-type]
        backend=VirtualBleakScanner.bind(radio),
    )


def test_every_advert_and_scan_response_fits_a_legacy_pdu() -> None:
    radio = world(20)
    radio.advance(3.0)
    for patch in radio.patches.values():
        sent = patch.transmit()
        assert sent is not None
        assert len(sent.advert_bytes) <= LEGACY_MAX and len(sent.scan_response_bytes) <= LEGACY_MAX
        # docs/ble-profile.md §3.1: Flags, then BTHome service data; the 128-bit UUID and the
        # name ride in the scan response.
        assert sent.advert_bytes[:3] == bytes([0x02, 0x01, 0x06])
        assert sent.advert_bytes[4:7] == bytes([0x16, 0xD2, 0xFC])
        assert sent.advert_bytes[7] == 0x41  # BTHome v2, encrypted
        assert sent.scan_response_bytes[:2] == bytes([0x11, 0x07])
        assert sent.scan_response_bytes[2:18] == uuid.UUID(uuids.PATCH_SERVICE).bytes[::-1]
        assert parse(sent.scan_response_bytes).local_name == patch.device_id


def test_a_long_name_is_shortened_and_an_oversized_advert_refused() -> None:
    response = scan_response("patch-with-a-very-long-name", connectable=True)
    assert len(response) == LEGACY_MAX and response[18 + 1] == 0x08  # shortened local name
    with pytest.raises(ValueError, match=r"cannot fit|exceeds"):
        advert_pdu(bytes(40))


async def test_active_scans_merge_the_scan_response_passive_ones_do_not() -> None:
    for mode, expect_uuid in (("active", True), ("passive", False)):
        radio = world(1)
        heard: Heard = []
        async with scanner(radio, heard, mode):
            radio.advance(2.0)
        assert heard
        _, adv = heard[-1]
        assert (uuids.PATCH_SERVICE in adv.service_uuids) is expect_uuid, mode
        assert uuids.BTHOME_SERVICE_DATA in adv.service_data


async def test_passive_scanning_needs_or_patterns_as_bleak_does() -> None:
    with pytest.raises(BleakError, match="or_patterns"):
        BleakScanner(None, scanning_mode="passive", backend=VirtualBleakScanner.bind(world()))


async def test_adverts_are_reported_only_on_change_and_rssi_only_by_8_db() -> None:
    radio = world(1, measure_every_s=10, advert_every_s=1)  # ten adverts per measurement
    patch = next(iter(radio.patches.values()))
    heard: Heard = []
    async with scanner(radio, heard):
        radio.advance(9.5)
        assert len(heard) == 1  # one measurement: one callback for ten transmissions
        patch.rssi -= 5
        radio.advance(1.0)
        assert len(heard) == 2  # the 10 s measurement changed the data
        patch.rssi -= 5  # -10 dB since the device object's RSSI: reported
        radio.advance(1.0)
        assert len(heard) == 3 and heard[-1][1].rssi == patch.rssi
    assert patch.adverts_sent >= 11 and patch.adverts_heard == 3


async def test_our_own_disconnect_fires_the_disconnected_callback() -> None:
    radio = world(1)
    address = next(iter(radio.patches))
    dropped: list[str] = []
    client = BleakClient(
        radio.device(address),
        disconnected_callback=lambda c: dropped.append(c.address),
        backend=VirtualBleakClient,
    )
    await client.connect()
    await client.disconnect()
    assert dropped == [address]


async def test_start_and_stop_errors_in_bluez_form() -> None:
    radio = world(1)
    adapter = radio.default_adapter
    adapter.fail_starts(BlueZErrorForm.NOT_READY, 1)
    adapter.fail_stop(1, BlueZErrorForm.IN_PROGRESS)
    scan = scanner(radio, [])
    with pytest.raises(BleakDBusError) as refused:
        await scan.start()
    assert refused.value.dbus_error == "org.bluez.Error.NotReady"
    await scan.start()
    with pytest.raises(BleakDBusError, match="InProgress"):
        await scan.stop()
    await scan.start()  # discovery is wedged now: started, but nothing is heard
    heard_before = radio.patch(next(iter(radio.patches))).adverts_heard
    radio.advance(3.0)
    assert radio.patch(next(iter(radio.patches))).adverts_heard == heard_before
    radio.bluez.recreate_adapter("hci0", "hci1")
    with pytest.raises(BleakDBusError, match="UnknownObject"):
        await scan.stop()


async def test_one_pending_le_connect_per_controller() -> None:
    radio = world(2)
    radio.connect_latency_s = 0.05
    first, second = (radio.device(a) for a in radio.patches)
    one = asyncio.create_task(BleakClient(first, backend=VirtualBleakClient).connect())
    await asyncio.sleep(0.01)
    with pytest.raises(BleakDBusError, match="InProgress"):
        await BleakClient(second, backend=VirtualBleakClient).connect()
    await one
    assert radio.default_adapter.max_concurrent_connects == 2


async def test_bleak_retry_connector_sees_links_other_processes_hold() -> None:
    radio = world(2)
    radio.bluez.install()
    radio.foreign_link("F0:0D:00:00:00:01")
    radio.stale_link(next(iter(radio.patches)))
    slots = BleakSlotManager()
    await slots.async_setup()
    slots.register_adapter("hci0", 3)
    assert slots.get_allocations("hci0").free == 1  # the headset and the stale link count
    stale = radio.device(next(iter(radio.patches)))
    await close_stale_connections(stale)
    assert radio.connected == 0 and slots.get_allocations("hci0").free == 2


async def test_clear_cache_removes_the_device_and_its_cached_services() -> None:
    radio = world(1)
    radio.bluez.install()
    address = next(iter(radio.patches))
    client = BleakClient(radio.device(address), backend=VirtualBleakClient)
    await client.connect()
    await client.disconnect()
    path = "/org/bluez/hci0/dev_" + address.replace(":", "_")
    assert path in radio.bluez._services_cache
    assert await clear_cache(address)
    assert path not in radio.bluez._properties and path not in radio.bluez._services_cache


def test_the_examples_in_the_profile_are_what_the_simulator_sends() -> None:
    """docs/ble-profile.md §3.1 quotes these bytes."""
    doc = (Path(__file__).parents[2] / "docs" / "ble-profile.md").read_text(encoding="utf-8")
    advert = advert_pdu(bytes.fromhex("41e445f3c9962b332211006c7c4519"))
    response = scan_response("patch-0042", connectable=True)
    flat = " ".join(doc.split())  # the doc groups and wraps the bytes
    assert advert.hex(" ") in flat and len(advert) == 22
    assert response.hex(" ") in flat and len(response) == 30
