"""The vendored browser assets: their URLs and subresource-integrity hashes from the lock file."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
LOCK = STATIC_DIR / "vendor" / "vendor.lock.json"
PREFIX = "/console/static"


@cache
def integrity() -> dict[str, str]:
    """Vendored file name → its sha384 SRI string, as the lock file records."""
    lock = json.loads(LOCK.read_text())
    return {entry["file"]: entry["integrity"] for entry in lock["files"]}


def vendor_url(name: str) -> str:
    """The URL a vendored file is served at."""
    return f"{PREFIX}/vendor/{name}"


def vendor_sri(name: str) -> str:
    """The SRI hash of a vendored file (KeyError for a file the lock does not list)."""
    return integrity()[name]
