"""Replayed, spoofed, wrong-key and unknown frames never become readings, and are counted."""

from __future__ import annotations

import logging
import os

import pytest
from prometheus_client import generate_latest

from gateway.ble import PairedPatch, RejectReason
from tests.bleak.test_bleak_harness import paired, running


async def test_replayed_notifications_are_refused_and_counted() -> None:
    async with running(1) as h:
        patch = h.patches[0]
        await h.play(3.0)
        patch.replay_next(3)
        await h.play(5.0)
        counters = h.acquisition.counters
        assert counters.rejected(RejectReason.REPLAYED) == 3
        keys = [r.key for r in h.delivered]
        assert len(keys) == len(set(keys))
        assert patch.address in h.acquisition.connected  # a few replays do not cost the link


async def test_corrupted_frames_fail_authentication() -> None:
    async with running(1) as h:
        patch = h.patches[0]
        await h.play(3.0)
        patch.corrupt_next(2)
        await h.play(5.0)
        assert h.acquisition.counters.rejected(RejectReason.AUTH_FAILED) == 2
        corrupted = {e.counter for e in patch.emissions if not e.authentic}
        assert len(corrupted) == 2
        assert not [r for r in h.of(patch) if r.seq in corrupted]


async def test_spoofer_on_a_link_is_refused_then_hung_up_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(1) as h:
        patch = h.patches[0]
        await h.play(3.0)
        before = len(h.delivered)
        patch.impersonate()  # the device at this address now seals with a key we do not hold
        with caplog.at_level(logging.WARNING, logger="gateway.ble"):
            await h.play(20.0)
        counters = h.acquisition.counters
        assert counters.rejected(RejectReason.AUTH_FAILED) >= h.acquisition.config.max_bad_frames
        assert len(h.delivered) == before
        # After max_bad_frames it hangs up, and its spoofed adverts earn it no new link.
        assert patch.address not in h.acquisition.connected
        assert counters.value("vigil_ble_link_failures_total") == 1
        assert "auth_failed" in caplog.text
        patch.restore_key()
        await h.play(10.0)
        assert len(h.delivered) > before  # the genuine patch is served again


async def test_wrong_key_patch_is_never_linked_nor_stored() -> None:
    async with running(2) as h_probe:
        good, stale = h_probe.patches
    allow = [
        PairedPatch(good.address, good.key, good.device_id),
        PairedPatch(stale.address, os.urandom(16), stale.device_id),  # re-keyed since pairing
    ]
    async with running(2, allow=allow) as h:
        await h.play(10.0)
        stale = h.patches[1]
        assert not h.of(stale)
        assert stale.address not in h.acquisition.connected
        assert h.acquisition.counters.rejected(RejectReason.AUTH_FAILED) >= 9
        assert h.of(h.patches[0])


async def test_unknown_devices_are_counted_not_linked() -> None:
    async with running(3) as h_probe:
        known = h_probe.patches[:1]
    async with running(3, allow=paired(known)) as h:
        await h.play(5.0)
        assert {r.device_id for r in h.delivered} == {known[0].device_id}
        assert h.acquisition.connected == {known[0].address}
        assert h.acquisition.counters.rejected(RejectReason.UNKNOWN_DEVICE) >= 8
        exported = generate_latest(h.acquisition.counters.registry).decode()
        assert 'vigil_ble_rejected_total{reason="unknown_device"}' in exported


async def test_silence_marks_a_patch_gone_and_its_return_clears_it() -> None:
    async with running(2) as h:
        patch = h.patches[1]
        await h.play(5.0)
        h.radio.leave(patch.address)
        await h.play(25.0, step_s=1.0)
        assert h.acquisition.gone == set() and h.gone == []
        await h.play(10.0, step_s=1.0)
        assert h.acquisition.gone == {patch.address}
        assert h.gone == [patch.address]  # reported once
        assert h.acquisition.counters.value("vigil_ble_patches_gone_total") == 1
        assert h.patches[0].address not in h.acquisition.gone
        h.radio.come_back(patch.address)
        await h.play(5.0)
        assert h.acquisition.gone == set()
        assert patch.address in h.acquisition.connected


async def test_replayed_and_spoofed_adverts_are_refused() -> None:
    async with running(2, connectable=0) as h:
        patch = h.patches[0]
        await h.play(3.0)
        captured = patch.current_advert()
        assert captured is not None
        await h.play(3.0)
        h.radio.inject(patch.address, captured)  # an old advert, re-broadcast
        forged = captured._replace(
            service_data={
                k: bytes([v[0]]) + bytes(len(v) - 1) for k, v in captured.service_data.items()
            }
        )
        h.radio.inject(patch.address, forged)
        h.radio.inject("C0:FF:EE:00:00:01", captured)  # someone else's address
        await h.play(1.0)
        counters = h.acquisition.counters
        assert counters.rejected(RejectReason.REPLAYED) == 1
        assert counters.rejected(RejectReason.AUTH_FAILED) == 1
        assert counters.rejected(RejectReason.UNKNOWN_DEVICE) == 1
        keys = [r.key for r in h.delivered]
        assert len(keys) == len(set(keys))
