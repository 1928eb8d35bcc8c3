"""Device attributes the rules filter on, and the scope test that uses them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rules.model import Scope


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the device registry knows about one device."""

    kind: str | None = None
    model: str | None = None
    site: str | None = None
    reference: str | None = None  # e.g. the patch on the contralateral limb


Registry = Mapping[str, DeviceInfo]

_UNKNOWN = DeviceInfo()


def device_matches(scope: Scope, info: DeviceInfo | None) -> bool:
    """Whether a device passes the scope's kind/model/site filters (unknown devices pass none)."""
    info = info or _UNKNOWN
    for wanted, have in ((scope.kind, info.kind), (scope.model, info.model),
                         (scope.site, info.site)):
        if wanted is not None and have not in wanted:
            return False
    return True
