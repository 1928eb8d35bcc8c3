"""Every vendored asset is the file the lock names, and every page links it with its hash."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from service.console.assets import LOCK, STATIC_DIR

PINNED = {"htmx.org", "htmx-ext-sse", "uplot", "axe-core"}


def _lock() -> list[dict[str, str]]:
    entries: list[dict[str, str]] = json.loads(LOCK.read_text())["files"]
    return entries


def test_every_vendored_file_matches_its_lock_entry() -> None:
    entries = _lock()
    assert {e["name"] for e in entries} == PINNED
    for entry in entries:
        data = (STATIC_DIR / "vendor" / entry["file"]).read_bytes()
        digest = base64.b64encode(hashlib.sha384(data).digest()).decode()
        assert entry["integrity"] == f"sha384-{digest}", entry["file"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry["version"]), "exact versions only"
        assert entry["tarball_integrity"].startswith("sha512-")


def test_nothing_unlisted_is_vendored() -> None:
    listed = {e["file"] for e in _lock()} | {LOCK.name}
    present = {p.name for p in Path(STATIC_DIR / "vendor").iterdir()}
    assert present == listed


def test_pages_link_vendored_scripts_with_integrity_and_no_cdn(
    login_client: Callable[[str], TestClient],
) -> None:
    client = login_client("nurse")
    html = client.get("/console/ward").text
    integrity = {e["file"]: e["integrity"] for e in _lock()}
    for name in ("htmx.min.js", "htmx-ext-sse.js", "uPlot.iife.min.js", "uPlot.min.css"):
        assert f'/console/static/vendor/{name}" integrity="{integrity[name]}"' in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no asset from another origin"
    served = client.get("/console/static/vendor/htmx.min.js")
    assert served.status_code == 200
    digest = base64.b64encode(hashlib.sha384(served.content).digest()).decode()
    assert f"sha384-{digest}" == integrity["htmx.min.js"]


def test_the_lock_is_what_the_vendoring_script_pins() -> None:
    path = Path(__file__).resolve().parents[2] / "scripts" / "vendor_assets.py"
    spec = importlib.util.spec_from_file_location("vendor_assets", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pinned = {
        (p.name, p.version, p.integrity, file) for p in script.PINS for file in p.files.values()
    }
    locked = {(e["name"], e["version"], e["tarball_integrity"], e["file"]) for e in _lock()}
    assert locked == pinned
    data = (STATIC_DIR / "vendor" / "htmx.min.js").read_bytes()
    assert script.sri(data) == next(e["integrity"] for e in _lock() if e["file"] == "htmx.min.js")
