"""Pairing keys: the patches a gateway may hear, their 16-byte keys and whose they are.

A key file is written at pairing and read at start-up, as TOML or JSON (by suffix)::

    version = 1

    [[patches]]
    address = "C0:7A:1E:00:00:00"
    key = "6f1c…"                    # 32 hex digits
    device_id = "patch-0000"         # what its readings carry
    patient = "pt-7f3a9c"            # a pseudonym, never a name

The file holds secrets, so it is refused when other users may read or change it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from contract.ble.address import address_from_str, address_to_str
from contract.errors import ContractError
from gateway.ble.allowlist import KEY_LEN, PairedPatch

KEY_FILE_VERSION: Final = 1
_FIELDS: Final = ("address", "key", "device_id", "patient")
# Ids travel in readings and logs: printable, short, no spaces, nothing to escape.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_HEX_KEY = re.compile(r"[0-9A-Fa-f]{32}")


class KeyStoreError(ValueError):
    """A key file that cannot be used; ``str()`` names the file, the entry and what is wrong."""


@dataclass(frozen=True, slots=True)
class PairingRecord:
    """One patch as provisioned at pairing."""

    address: str
    key: bytes = field(repr=False)  # never in logs
    device_id: str
    patient: str  # pseudonym of the patient wearing it

    def paired(self) -> PairedPatch:
        """The allowlist entry BLE acquisition takes."""
        return PairedPatch(self.address, self.key, self.device_id)


@dataclass(frozen=True, slots=True)
class KeyStore:
    """Every pairing of one gateway, validated: unique addresses, device ids and keys."""

    records: tuple[PairingRecord, ...] = ()

    def __post_init__(self) -> None:
        _check_unique(self.records, "<memory>")

    def paired(self, patient: str | None = None) -> list[PairedPatch]:
        """The allowlist: every paired patch, or only those of ``patient``."""
        return [r.paired() for r in self.records if patient is None or r.patient == patient]

    def patients(self) -> list[str]:
        """Pseudonyms of the patients with paired patches, sorted."""
        return sorted({r.patient for r in self.records})

    def record(self, address: str) -> PairingRecord | None:
        """The pairing of ``address``, if any."""
        wanted = address.upper()
        return next((r for r in self.records if r.address == wanted), None)

    def pair(self, record: PairingRecord) -> KeyStore:
        """A store with ``record`` added; re-pairing an address replaces its old key."""
        kept = tuple(r for r in self.records if r.address != record.address)
        return KeyStore((*kept, record))

    def unpair(self, address: str) -> KeyStore:
        """A store without ``address`` (a dressing thrown away, or a patch lost)."""
        wanted = address.upper()
        return KeyStore(tuple(r for r in self.records if r.address != wanted))


def make_record(address: str, key: bytes, device_id: str, patient: str) -> PairingRecord:
    """Validate one pairing (as a file entry would be) and return it normalised."""
    return _record(
        {"address": address, "key": key.hex(), "device_id": device_id, "patient": patient},
        "<pairing>",
    )


def parse_keystore(document: Mapping[str, object], source: str = "<memory>") -> KeyStore:
    """Validate a parsed key file; ``source`` names it in errors."""
    unknown = sorted(set(document) - {"version", "patches"})
    if unknown:
        raise KeyStoreError(f"{source}: unknown top-level keys {unknown}")
    version = document.get("version")
    if version != KEY_FILE_VERSION:
        raise KeyStoreError(
            f"{source}: version is {version!r}; this gateway reads version {KEY_FILE_VERSION}"
        )
    entries = document.get("patches", [])
    if not isinstance(entries, list):
        raise KeyStoreError(f"{source}: 'patches' must be a list of tables")
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise KeyStoreError(f"{source}: patches[{i}] is not a table")
        records.append(_record(entry, f"{source}: patches[{i}]"))
    _check_unique(records, source)
    return KeyStore(tuple(records))


def load_keystore(path: Path | str) -> KeyStore:
    """Read and validate a key file; KeyStoreError says what to fix."""
    path = Path(path)
    try:
        # Open first, then check the open file: the check and the read see the same inode.
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot open key file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        _check_private(path, os.fstat(handle.fileno()))
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
        document: object
        if path.suffix == ".toml":
            document = tomllib.loads(text)
        elif path.suffix == ".json":
            document = json.loads(text)
        else:
            raise KeyStoreError(f"{path}: key files end in .toml or .json")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise KeyStoreError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(document, dict):
        raise KeyStoreError(f"{path}: expected a table at the top level")
    return parse_keystore(document, str(path))


def save_keystore(store: KeyStore, path: Path | str) -> None:
    """Write ``store`` atomically, readable by its owner only (0600)."""
    path = Path(path)
    if path.suffix == ".toml":
        text = _to_toml(store)
    elif path.suffix == ".json":
        entries = [
            {
                "address": r.address,
                "key": r.key.hex(),
                "device_id": r.device_id,
                "patient": r.patient,
            }
            for r in store.records
        ]
        text = json.dumps({"version": KEY_FILE_VERSION, "patches": entries}, indent=2) + "\n"
    else:
        raise KeyStoreError(f"{path}: key files end in .toml or .json")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    # Created 0600 from the start: a chmod after writing would leave a window of exposure.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # a crash leaves the old file or the new one, never half of one


def _check_private(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyStoreError(f"{path}: not a regular file")
    if os.name == "nt":
        return  # ACLs, not mode bits, protect files there
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IROTH:
        raise KeyStoreError(
            f"{path}: key file is readable by every user (mode {mode:04o}); pairing keys are "
            f"secrets: run `chmod 600 {path}` (or 640 for a service group) and restart"
        )
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        raise KeyStoreError(
            f"{path}: key file is writable by other users (mode {mode:04o}), who could pair "
            f"their own devices: run `chmod 600 {path}` and restart"
        )


def _record(entry: Mapping[str, object], where: str) -> PairingRecord:
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise KeyStoreError(f"{where}: unknown fields {unknown} (expected {list(_FIELDS)})")
    values: dict[str, str] = {}
    for name in _FIELDS:
        value = entry.get(name)
        if not isinstance(value, str):
            raise KeyStoreError(
                f"{where}: '{name}' must be a string, got {value!r}"
                if name != "key"
                else f"{where}: 'key' must be a hex string"
            )
        values[name] = value.strip()
    try:
        address = address_to_str(address_from_str(values["address"]))
    except ContractError:
        raise KeyStoreError(
            f"{where}: 'address' {values['address']!r} is not a Bluetooth "
            "address like C0:7A:1E:00:00:01"
        ) from None
    # The key itself never goes into a message, only what is wrong with it.
    if not _HEX_KEY.fullmatch(values["key"]):
        raise KeyStoreError(
            f"{where} ({address}): 'key' must be {2 * KEY_LEN} hex digits "
            f"({KEY_LEN} bytes), got {len(values['key'])} characters"
        )
    key = bytes.fromhex(values["key"])
    if key == bytes(KEY_LEN):
        raise KeyStoreError(
            f"{where} ({address}): 'key' is all zeros: the patch was never provisioned"
        )
    for name in ("device_id", "patient"):
        if not _ID.fullmatch(values[name]):
            raise KeyStoreError(
                f"{where} ({address}): '{name}' {values[name]!r} must be 1-64 "
                "letters, digits or . _ : - (and start with a letter or digit)"
            )
    return PairingRecord(address, key, values["device_id"], values["patient"])


def _check_unique(records: Iterable[PairingRecord], source: str) -> None:
    addresses: set[str] = set()
    devices: set[str] = set()
    keys: dict[bytes, str] = {}
    for r in records:
        if r.address in addresses:
            raise KeyStoreError(f"{source}: {r.address} is paired twice")
        if r.device_id in devices:
            raise KeyStoreError(f"{source}: device id {r.device_id!r} is used by two patches")
        if r.key in keys:
            # Not unsafe by itself (nonces carry the address) but always a copy-paste mistake.
            raise KeyStoreError(f"{source}: {r.address} has the same key as {keys[r.key]}")
        addresses.add(r.address)
        devices.add(r.device_id)
        keys[r.key] = r.address


def _to_toml(store: KeyStore) -> str:
    lines = [f"version = {KEY_FILE_VERSION}"]
    for r in store.records:
        # Values are validated ids, addresses and hex, so JSON quoting is valid TOML quoting.
        lines += [
            "",
            "[[patches]]",
            f"address = {json.dumps(r.address)}",
            f"key = {json.dumps(r.key.hex())}",
            f"device_id = {json.dumps(r.device_id)}",
            f"patient = {json.dumps(r.patient)}",
        ]
    return "\n".join(lines) + "\n"
