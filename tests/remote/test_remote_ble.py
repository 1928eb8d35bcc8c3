"""BLE completeness against virtual patches: Health Thermometer indications, Device Information
with hardware revision, BTHome adverts carrying objects vigil does not use."""

from __future__ import annotations

import pytest

from contract.ble.bthome import BTHomeObject, decode_bthome_adv
from contract.ble.errors import BleDecodeError
from simulator.bleak_backend import VirtualPatch, VirtualRadio
from tests.bleak.test_bleak_harness import running

# Illuminance (0x05, 3 bytes), a button event (0x3a, 1 byte), a timestamp (0x50, 4 bytes).
EXTRA = bytes([0x05, 1, 2, 3, 0x3A, 1, 0x50, 9, 9, 9, 9])
# What fits beside the patch's own objects in a 31-byte legacy advert: a button, a count.
EXTRA_AIR = bytes([0x3A, 1, 0x09, 7])


def _thermometer_only(_: VirtualRadio, patches: list[VirtualPatch]) -> None:
    patches[0].sends_frames = False


async def test_hts_indications_are_stored_when_the_frame_does_not_carry_them() -> None:
    async with running(1, connectable=1, prepare=_thermometer_only) as h:
        await h.play(12.0)
        patch = h.patches[0]
        temps = h.of(patch, "wound_temp")
        assert temps, "no HTS reading delivered"
        assert not h.of(patch, "wound_ph")  # no frame came
        measured = {round(e.sample.wound_temp, 2) for e in patch.emissions}
        assert {round(r.value, 2) for r in temps} <= measured
        assert len({r.key for r in temps}) == len(temps)
        assert patch.address in h.acquisition.connected  # indications keep the link alive


async def test_a_patch_that_sends_frames_is_never_read_through_hts() -> None:
    async with running(1, connectable=1) as h:
        await h.play(8.0)
        patch = h.patches[0]
        sent = {e.counter for e in patch.emissions if e.authentic and (e.notified or e.advertised)}
        frames = {e.counter for e in patch.emissions if e.authentic and e.notified}
        temps = h.of(patch, "wound_temp")
        assert sorted(r.seq for r in temps) == sorted(sent)  # one per measurement
        same = h.acquisition.counters.hts.labels("framed")._value.get()
        assert same >= len(frames) - 1 and frames


async def test_device_information_with_hardware_revision_is_due_upstream() -> None:
    async with running(1, connectable=1) as h:
        await h.play(5.0)
        patch = h.patches[0]
        info = h.acquisition.device_info[patch.address]
        assert info.hardware_revision == "B2" and info.firmware_revision == "1.4.2"
        assert h.acquisition.device_info_due() == [(patch.device_id, info)]
        h.acquisition.device_info_published(patch.device_id, info)
        assert h.acquisition.device_info_due() == []


def _newer_firmware(_: VirtualRadio, patches: list[VirtualPatch]) -> None:
    patches[0].extra_bthome = EXTRA_AIR


async def test_bthome_adverts_with_unknown_objects_keep_their_known_values() -> None:
    async with running(1, connectable=0, prepare=_newer_firmware) as h:
        await h.play(8.0)
        patch = h.patches[0]
        assert h.of(patch, "wound_temp") and h.of(patch, "battery")
        counted = h.acquisition.counters.unknown_objects[patch.device_id]
        assert set(counted) == {0x3A, 0x09} and min(counted.values()) >= 3


def test_decoder_skips_defined_ids_and_stops_at_undefined_ones() -> None:
    plain = bytes([0x40, 0x01, 80, *EXTRA, 0x02, 0x10, 0x0E, 0x99, 7, 0x01, 5])
    advert = decode_bthome_adv(plain)
    assert advert.get(BTHomeObject.BATTERY) == (80.0,)  # the 0x01 after 0x99 is lost
    assert advert.get(BTHomeObject.TEMPERATURE) == (36.0,)
    assert advert.unknown == (0x05, 0x3A, 0x50, 0x99)
    with pytest.raises(BleDecodeError, match="truncated"):
        decode_bthome_adv(bytes([0x40, 0x02, 0x10]))
