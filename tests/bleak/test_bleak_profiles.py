"""Ward and home-kit profiles: what each yields, and the home kit's outbox arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.equipment_bridge import SiteBrokerSettings
from gateway.keystore import KeyStore, KeyStoreError, make_record
from gateway.profiles import OutboxSizing, ProfileKind, home_kit_profile, ward_profile
from simulator.bleak_backend import patch_address, patch_key


def keys(patients: list[str]) -> KeyStore:
    store = KeyStore()
    for i, patient in enumerate(patients):
        store = store.pair(
            make_record(patch_address(i), patch_key(1, i), f"patch-{i:04d}", patient)
        )
    return store


def test_fourteen_days_of_two_patches_at_one_measurement_a_minute() -> None:
    sizing = OutboxSizing(offline_days=14, patches=2, measure_every_s=60)
    assert sizing.readings_per_day == 2 * 6 * 1440 == 17_280
    assert sizing.max_readings == 303_000  # 241,920 x 1.25 = 302,400, rounded up
    assert "241,920" in sizing.explain() and "303,000 readings" in sizing.explain()
    assert sizing.disk_bytes < 20_000_000  # fits any phone


def test_home_kit_serves_one_patient_with_few_slots_and_no_bridge(tmp_path: Path) -> None:
    kit = home_kit_profile(
        keys(["pt-a", "pt-b", "pt-a"]), "pt-a", gateway_id="kit-1", state_dir=tmp_path
    )
    assert kit.kind is ProfileKind.HOME_KIT
    assert [p.device_id for p in kit.paired] == ["patch-0000", "patch-0002"]
    assert kit.ble.max_connections == 2
    assert kit.ble.scan_window_s is not None and kit.ble.scan_window_s < kit.ble.scan_every_s
    assert kit.settings.site_broker is None
    assert kit.sizing is not None
    assert kit.settings.outbox_max_readings == kit.sizing.max_readings == 303_000
    assert kit.settings.outbox_path.parent == tmp_path
    assert kit.ble.replay_marks_path is not None and kit.ble.replay_marks_path.parent == tmp_path
    ward = ward_profile(keys(["pt-a"]), gateway_id="gw-1", state_dir=tmp_path)
    assert kit.settings.uplink.linger_s > ward.settings.uplink.linger_s
    assert kit.settings.uplink.batch_max_readings > ward.settings.uplink.batch_max_readings
    single = home_kit_profile(keys(["pt-a"]), "pt-a", gateway_id="kit-2", state_dir=tmp_path)
    assert single.ble.max_connections == 1


def test_home_kit_refuses_a_patient_without_patches_or_with_too_many(tmp_path: Path) -> None:
    no_patch = r"no patch is paired for patient 'pt-z' \(patients: pt-a"
    with pytest.raises(KeyStoreError, match=no_patch):
        home_kit_profile(keys(["pt-a"]), "pt-z", gateway_id="k", state_dir=tmp_path)
    with pytest.raises(KeyStoreError, match="has 3 patches paired"):
        home_kit_profile(keys(["pt-a"] * 3), "pt-a", gateway_id="k", state_dir=tmp_path)


def test_ward_takes_every_patch_and_bridges_equipment(tmp_path: Path) -> None:
    site = SiteBrokerSettings()
    ward = ward_profile(
        keys(["pt-a", "pt-b"]), gateway_id="gw-1", state_dir=tmp_path, site_broker=site
    )
    assert ward.kind is ProfileKind.WARD and len(ward.paired) == 2
    assert ward.settings.site_broker is site and ward.ble.scan_window_s is None
    assert ward.sizing is None
