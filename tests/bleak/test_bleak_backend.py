"""The simulator as a bleak backend, driven only through bleak's public API."""

from __future__ import annotations

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import BleakNotFoundError, establish_connection

from contract.ble import uuids
from contract.ble.bthome import BTHomeObject, decode_bthome_adv
from contract.ble.frame import decode_patch_frame
from contract.ble.gatt import decode_battery_level, decode_utf8s
from contract.ble.health_thermometer import decode_temperature_measurement
from simulator.bleak_backend import VirtualBleakClient, VirtualBleakScanner, VirtualRadio, populate
from simulator.fleet import FleetSpec


def world(patches: int = 3, connectable: int | None = None) -> VirtualRadio:
    radio = VirtualRadio()
    populate(radio, FleetSpec(patches=patches), connectable=connectable)
    return radio


async def scan(
    radio: VirtualRadio, seconds: float
) -> dict[str, tuple[BLEDevice, AdvertisementData]]:
    heard: dict[str, tuple[BLEDevice, AdvertisementData]] = {}

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        heard[device.address] = (device, adv)

    async with BleakScanner(on_advert, backend=VirtualBleakScanner.bind(radio)) as scanner:
        radio.advance(seconds)
        assert scanner.backend_id == "VirtualBleakScanner"
        assert {d.address for d in scanner.discovered_devices} == set(heard)
    return heard


async def test_scanner_hears_encrypted_bthome_adverts_of_every_patch() -> None:
    radio = world(3, connectable=2)
    heard = await scan(radio, 2.0)
    assert set(heard) == set(radio.patches)
    for address, (_device, adv) in heard.items():
        patch = radio.patch(address)
        advert = decode_bthome_adv(
            adv.service_data[uuids.BTHOME_SERVICE_DATA], mac=patch.mac, key=patch.key
        )
        last = [e for e in patch.emissions if e.advertised][-1]
        assert advert.counter == last.counter
        assert advert.get(BTHomeObject.TEMPERATURE) == (
            last.sample.wound_temp,
            last.sample.skin_temp,
        )
        assert (uuids.PATCH_SERVICE in adv.service_uuids) == patch.connectable


async def test_scanner_stops_hearing_after_stop_and_when_advertising_is_off() -> None:
    radio = world(2)
    quiet = radio.patch(next(iter(radio.patches)))
    quiet.advertising = False
    heard = await scan(radio, 2.0)
    assert quiet.address not in heard and len(heard) == 1
    radio.advance(2.0)  # after the scanner stopped: nobody hears, nothing breaks


async def test_client_connects_reads_gatt_and_receives_notifications() -> None:
    radio = world(1)
    device, _ = (await scan(radio, 1.0))[next(iter(radio.patches))]
    patch = radio.patch(device.address)
    client = await establish_connection(BleakClient, device, "t", backend=VirtualBleakClient)
    assert client.is_connected and radio.connected == 1
    assert {s.uuid for s in client.services} == {
        uuids.PATCH_SERVICE,
        uuids.HEALTH_THERMOMETER_SERVICE,
        uuids.BATTERY_SERVICE,
        uuids.DEVICE_INFORMATION_SERVICE,
    }
    assert decode_utf8s(bytes(await client.read_gatt_char(uuids.SERIAL_NUMBER))) == "SN-patch-0000"
    battery = decode_battery_level(bytes(await client.read_gatt_char(uuids.BATTERY_LEVEL)))
    assert battery == patch.emissions[-1].frame.battery

    frames: list[bytes] = []
    temps: list[float] = []

    def on_frame(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        frames.append(bytes(data))

    def on_temp(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        temps.append(decode_temperature_measurement(bytes(data)).celsius)

    await client.start_notify(uuids.PATCH_MEASUREMENT, on_frame)
    await client.start_notify(uuids.TEMPERATURE_MEASUREMENT, on_temp)
    radio.advance(5.0)
    decoded = [decode_patch_frame(f, patch.key, patch.mac) for f in frames]
    sent = list(patch.emissions)[-5:]
    assert [f.counter for f in decoded] == [e.counter for e in sent]
    assert [f.wound_temp for f in decoded] == [e.sample.wound_temp for e in sent]
    assert temps == [e.sample.wound_temp for e in sent]

    await client.stop_notify(uuids.PATCH_MEASUREMENT)
    radio.advance(2.0)
    assert len(frames) == 5
    with pytest.raises(BleakError):
        await client.write_gatt_char(uuids.BATTERY_LEVEL, b"\x01", response=True)
    await client.disconnect()
    assert not client.is_connected and radio.connected == 0


async def test_link_drop_fires_the_disconnected_callback() -> None:
    radio = world(1)
    address = next(iter(radio.patches))
    dropped: list[str] = []
    client = BleakClient(
        radio.device(address),
        disconnected_callback=lambda c: dropped.append(c.address),
        backend=VirtualBleakClient,
    )
    await client.connect()
    radio.drop(address)
    assert dropped == [address] and not client.is_connected
    with pytest.raises(BleakError):
        await client.read_gatt_char(uuids.BATTERY_LEVEL)


async def test_absent_patch_cannot_be_connected() -> None:
    radio = world(1)
    address = next(iter(radio.patches))
    radio.leave(address)
    with pytest.raises(BleakNotFoundError):
        await establish_connection(
            BleakClient, radio.device(address), "t", max_attempts=1, backend=VirtualBleakClient
        )


async def test_controller_slot_limit_refuses_extra_links() -> None:
    radio = world(2)
    radio.max_connections = 1
    first, second = (radio.device(a) for a in radio.patches)
    await BleakClient(first, backend=VirtualBleakClient).connect()
    # The BlueZ form: the controller refuses with Limited Resources, bluetoothd says this.
    with pytest.raises(BleakError, match="le-connection-abort-by-local"):
        await BleakClient(second, backend=VirtualBleakClient).connect()


async def test_same_seed_same_air() -> None:
    a, b = world(2), world(2)
    a.advance(10.0)
    b.advance(10.0)
    for address in a.patches:
        assert [e.frame for e in a.patch(address).emissions] == [
            e.frame for e in b.patch(address).emissions
        ]
