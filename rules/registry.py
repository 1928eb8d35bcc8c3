"""Device attributes the rules filter on, and the scope test that uses them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from rules.model import Scope


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the device registry knows about one device."""

    kind: str | None = None
    model: str | None = None
    site: str | None = None
    reference: str | None = None  # e.g. the patch on the contralateral limb
    # Which patient and wound the patch is on: a new patch of the same wound continues the
    # wound's history and baselines, and supersedes the patch before it (docs/rules.md).
    patient: str | None = None
    wound: str | None = None
    # The patient's other wound (site) whose current patch is this one's reference.
    reference_wound: str | None = None

    @property
    def wound_key(self) -> str | None:
        """The (patient, wound) group this device belongs to, if the registry says."""
        if self.patient is None or self.wound is None:
            return None
        return f"{self.patient}\x1f{self.wound}"


Registry = Mapping[str, DeviceInfo]
FIELDS = ("kind", "model", "site", "reference", "patient", "wound", "reference_wound")

_UNKNOWN = DeviceInfo()


def device_matches(scope: Scope, info: DeviceInfo | None) -> bool:
    """Whether a device passes the scope's kind/model/site filters (unknown devices pass none)."""
    info = info or _UNKNOWN
    for wanted, have in (
        (scope.kind, info.kind),
        (scope.model, info.model),
        (scope.site, info.site),
    ):
        if wanted is not None and have not in wanted:
            return False
    return True


def load_registry(path: str | Path) -> dict[str, DeviceInfo]:
    """A device registry from YAML/JSON: ``{device_id: {kind, model, site, reference, ...}}``."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of device id to attributes")
    registry: dict[str, DeviceInfo] = {}
    for device_id, attrs in doc.items():
        if not isinstance(attrs, dict) or set(attrs) - set(FIELDS):
            raise ValueError(f"{path}: device {device_id!r}: attributes are {', '.join(FIELDS)}")
        registry[str(device_id)] = DeviceInfo(**{k: str(v) for k, v in attrs.items()})
    return registry
