"""The installed base as ingest sees it: the site each gateway serves and each device is in.

A gateway's certificate proves which gateway sent a batch; this registry says which devices that
gateway may report. The file is YAML (or JSON, which YAML reads)::

    gateways:
      ward-3-gateway: sh-ruijin
    devices:
      patch-0001: {site: sh-ruijin, kind: patch}

``vigil devices export-registry`` writes it from the service store. ``InstalledBaseFile``
re-reads it when it changes, so registering a device needs no restart; a change that does not
parse is logged and the last good registry stays in force.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract import Batch, DeviceKind

log = logging.getLogger(__name__)


class InstalledBaseError(ValueError):
    """An installed-base file that cannot be read or is malformed; ``str()`` says why."""


class DeviceEntry(BaseModel):
    """Where one device is installed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(min_length=1)
    kind: DeviceKind | None = None


class InstalledBase(BaseModel):
    """Gateways by id → their site; devices by id → where they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateways: dict[str, str] = Field(default_factory=dict)
    devices: dict[str, DeviceEntry] = Field(default_factory=dict)

    def problem(self, gateway_id: str, device_id: str) -> str | None:
        """Why ``gateway_id`` may not report ``device_id``, or None if it may."""
        site = self.gateways.get(gateway_id)
        if site is None:
            return f"gateway {gateway_id!r} is not in the installed base"
        device = self.devices.get(device_id)
        if device is None:
            return f"device {device_id!r} is not in the installed base"
        if device.site != site:
            return (
                f"device {device_id!r} is installed at site {device.site!r}, not at "
                f"{site!r} where gateway {gateway_id!r} is"
            )
        return None

    def unregistered(self, batch: Batch) -> list[tuple[int, str]]:
        """(index, reason) of every reading of ``batch`` its gateway may not report."""
        found: list[tuple[int, str]] = []
        verdicts: dict[str, str | None] = {}  # a batch repeats few devices many times
        for index, reading in enumerate(batch.readings):
            device_id = reading.device_id
            if device_id not in verdicts:
                verdicts[device_id] = self.problem(batch.gateway_id, device_id)
            reason = verdicts[device_id]
            if reason is not None:
                found.append((index, reason))
        return found

    def dump(self) -> str:
        """The registry as YAML-compatible JSON text, sorted (stable diffs)."""
        doc = self.model_dump(mode="json", exclude_none=True)
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def parse_installed_base(text: str, where: str = "installed base") -> InstalledBase:
    """Parse YAML/JSON text; InstalledBaseError naming ``where`` if it is not a registry."""
    import yaml  # the server role's; a gateway never loads this module's parser

    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InstalledBaseError(f"{where}: not YAML/JSON: {exc}") from None
    try:
        return InstalledBase.model_validate(doc or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        raise InstalledBaseError(f"{where}: {at}: {first['msg']}") from None


def load_installed_base(path: Path) -> InstalledBase:
    """Read and parse the registry at ``path``; InstalledBaseError if that fails."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InstalledBaseError(f"installed base {path}: {reason or exc}") from None
    return parse_installed_base(text, f"installed base {path}")


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What tells a changed file apart: inode, size, modification time."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Stamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


class InstalledBaseFile:
    """The registry in a file, re-read whenever the file changes.

    The first read must succeed (``InstalledBaseError`` otherwise: refuse to start on a broken
    registry); a later change that cannot be read keeps the last good registry and logs why,
    once per change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = _Stamp.of(path)
        self._base = load_installed_base(path)
        self._failed: _Stamp | None = None
        self.reloads = 0

    def current(self) -> InstalledBase:
        """The registry as the file says now (or the last good one)."""
        stamp = _Stamp.of(self.path)
        if stamp == self._stamp or stamp == self._failed:
            return self._base
        if stamp is None:
            if self._failed is None and self._stamp is not None:
                log.error("installed base %s is gone; keeping the last one read", self.path)
            self._stamp = None
            return self._base
        try:
            base = load_installed_base(self.path)
        except InstalledBaseError as exc:
            self._failed = stamp
            log.error("%s; keeping the last good installed base", exc)
            return self._base
        self._base, self._stamp, self._failed = base, stamp, None
        self.reloads += 1
        log.info(
            "installed base %s reloaded: %d gateways, %d devices",
            self.path,
            len(base.gateways),
            len(base.devices),
        )
        return self._base
