#!/usr/bin/env python3
"""Vendor the console's browser assets from the npm registry, pinned and checked.

For each pinned package: ``npm pack`` fetches the tarball, whose sha512 must equal both the
registry's ``dist.integrity`` and the integrity pinned here; the files the console serves are
extracted into ``service/console/static/vendor/`` and listed, with their sha384 subresource
integrity, in ``vendor.lock.json`` (templates put it in ``integrity=``; a test checks the files
still match). Run it only to change a version; the vendored files are committed, so the console
never reaches a CDN or the registry at run time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "service" / "console" / "static" / "vendor"
LOCK = VENDOR / "vendor.lock.json"


class Pin(NamedTuple):
    """A package at one version, its tarball's integrity, and the files served from it."""

    name: str
    version: str
    integrity: str
    files: dict[str, str]  # path in the tarball → file name under vendor/


PINS = (
    Pin(
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        {"package/dist/htmx.min.js": "htmx.min.js"},
    ),
    Pin(
        "htmx-ext-sse",
        "2.2.4",
        "sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ==",
        {"package/dist/sse.js": "htmx-ext-sse.js"},
    ),
    Pin(
        "uplot",
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
        },
    ),
    Pin(
        "axe-core",
        "4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        {"package/axe.min.js": "axe.min.js"},
    ),
)


def sri(data: bytes, algorithm: str = "sha384") -> str:
    """The subresource-integrity string of ``data`` ("sha384-<base64>")."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def registry_integrity(pin: Pin) -> str:
    """What the registry says the tarball's integrity is."""
    out = subprocess.run(
        ["npm", "view", f"{pin.name}@{pin.version}", "dist.integrity"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def fetch(pin: Pin, into: Path) -> Path:
    """The package's tarball, fetched by npm into ``into``, checked against both integrities."""
    out = subprocess.run(
        ["npm", "pack", f"{pin.name}@{pin.version}", "--json", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = into / json.loads(out.stdout)[0]["filename"]
    got = sri(tarball.read_bytes(), "sha512")
    told = registry_integrity(pin)
    if not (got == told == pin.integrity):
        sys.exit(
            f"{pin.name}@{pin.version}: tarball {got}, registry {told}, pinned {pin.integrity}"
        )
    return tarball


def extract(pin: Pin, tarball: Path) -> list[dict[str, str]]:
    """Copy the served files of ``pin`` into vendor/; their lock entries."""
    entries = []
    with tarfile.open(tarball) as tar:
        for member, name in pin.files.items():
            source = tar.extractfile(member)
            if source is None:
                sys.exit(f"{pin.name}: {member} is not a file")
            data = source.read()
            (VENDOR / name).write_bytes(data)
            entries.append(
                {
                    "name": pin.name,
                    "version": pin.version,
                    "tarball_integrity": pin.integrity,
                    "member": member,
                    "file": name,
                    "integrity": sri(data),
                }
            )
    return entries


def main() -> None:
    """Fetch, check and extract every pin; write the lock file."""
    VENDOR.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pin in PINS:
            entries += extract(pin, fetch(pin, Path(tmp)))
            print(f"{pin.name}@{pin.version}: ok")
    LOCK.write_text(json.dumps({"files": entries}, indent=2) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
