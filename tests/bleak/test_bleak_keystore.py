"""The pairing key store: file formats, validation, permissions, and the allowlist it feeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.keystore import (
    KeyStore,
    KeyStoreError,
    load_keystore,
    make_record,
    parse_keystore,
    save_keystore,
)
from simulator.bleak_backend import patch_address, patch_key
from tests.bleak.test_bleak_harness import running

KEY = bytes(range(1, 17))


def entry(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "address": "c0:7a:1e:00:00:01",
        "key": KEY.hex(),
        "device_id": "patch-0001",
        "patient": "pt-7f3a",
    }
    return base | overrides


def store(n: int = 3) -> KeyStore:
    keys = KeyStore()
    for i in range(n):
        keys = keys.pair(
            make_record(
                patch_address(i), patch_key(7, i), f"patch-{i:04d}", "pt-a" if i < 2 else "pt-b"
            )
        )
    return keys


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_round_trip_is_private_and_exact(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"keys{suffix}"
    save_keystore(store(), path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    loaded = load_keystore(path)
    assert loaded == store()
    assert loaded.patients() == ["pt-a", "pt-b"]
    assert [p.device_id for p in loaded.paired("pt-a")] == ["patch-0000", "patch-0001"]
    assert KEY.hex() not in repr(loaded)  # keys never reach logs through repr


def test_world_readable_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    save_keystore(store(), path)
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match=r"readable by every user \(mode 0644\).*chmod 600"):
        load_keystore(path)
    path.chmod(0o620)
    with pytest.raises(KeyStoreError, match="writable by other users"):
        load_keystore(path)
    path.chmod(0o640)  # a service group may read it
    assert load_keystore(path) == store()


def test_missing_and_unparsable_files_say_which_file(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot open key file"):
        load_keystore(tmp_path / "nope.toml")
    bad = tmp_path / "keys.toml"
    bad.write_text("version = [")
    bad.chmod(0o600)
    with pytest.raises(KeyStoreError, match=f"{bad}: not valid TOML"):
        load_keystore(bad)
    other = tmp_path / "keys.yaml"
    other.write_text("{}")
    other.chmod(0o600)
    with pytest.raises(KeyStoreError, match=r"\.toml or \.json"):
        load_keystore(other)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"key": "abcd"}, r"32 hex digits \(16 bytes\), got 4"),
        ({"key": "zz" * 16}, "32 hex digits"),
        ({"key": "00" * 16}, "all zeros"),
        ({"key": 12}, "'key' must be a hex string"),
        ({"address": "C0:7A:1E:00:01"}, "not a Bluetooth address"),
        ({"device_id": ""}, "'device_id' '' must be 1-64"),
        ({"patient": "Jane Doe"}, "'patient' 'Jane Doe' must be"),
        ({"kye": "x"}, r"unknown fields \['kye'\]"),
    ],
)
def test_bad_entries_name_the_entry_and_the_problem(patch: dict[str, object], message: str) -> None:
    with pytest.raises(KeyStoreError, match=message) as caught:
        parse_keystore({"version": 1, "patches": [entry(), entry(**patch)]}, "keys.json")
    assert "keys.json: patches[1]" in str(caught.value)
    assert KEY.hex() not in str(caught.value)


def test_duplicates_and_versions_are_refused() -> None:
    two = entry(address="C0:7A:1E:00:00:02", key=bytes(range(2, 18)).hex(), device_id="p2")
    ok = parse_keystore({"version": 1, "patches": [entry(), two]})
    assert ok.record("c0:7a:1e:00:00:02") is not None
    with pytest.raises(KeyStoreError, match="paired twice"):
        parse_keystore({"version": 1, "patches": [entry(), entry(device_id="x")]})
    with pytest.raises(KeyStoreError, match="used by two patches"):
        parse_keystore({"version": 1, "patches": [entry(), two | {"device_id": "patch-0001"}]})
    with pytest.raises(KeyStoreError, match="same key as C0:7A:1E:00:00:01"):
        parse_keystore({"version": 1, "patches": [entry(), two | {"key": KEY.hex()}]})
    with pytest.raises(KeyStoreError, match="version is 2"):
        parse_keystore({"version": 2, "patches": []})
    with pytest.raises(KeyStoreError, match="unknown top-level"):
        parse_keystore({"version": 1, "patch": []})


def test_re_pairing_replaces_the_key_and_unpairing_removes(tmp_path: Path) -> None:
    keys = store(1)
    address = patch_address(0)
    fresh = os.urandom(16)
    keys = keys.pair(make_record(address, fresh, "patch-0000", "pt-a"))
    record = keys.record(address)
    assert record is not None and record.key == fresh and len(keys.records) == 1
    assert keys.unpair(address).records == ()
    path = tmp_path / "keys.json"
    save_keystore(keys, path)
    assert json.loads(path.read_text())["patches"][0]["key"] == fresh.hex()


async def test_the_allowlist_of_a_running_acquisition_comes_from_the_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.toml"
    save_keystore(store(3), path)
    allow = load_keystore(path).paired("pt-a")
    async with running(3, allow=allow) as h:
        await h.play(4.0)
        assert {r.device_id for r in h.delivered} == {"patch-0000", "patch-0001"}
