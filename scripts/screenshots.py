#!/usr/bin/env python3
"""Screenshot every console screen at 1280 px (desktop) and 390×844 (phone) into docs/screenshots/.

Starts the API+console in uvicorn over the console tests' small seeded world (with one live
infection alert, so the ward board shows one), logs in as each role, and follows that role's
navigation: every screen a role can reach from the menu is taken, so new screens are picked up
without listing them here. Uses Debian's chromium through Playwright (``make screenshots``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from infra.telemetry import open_store  # noqa: E402
from service.store import SqliteStore  # noqa: E402
from tests.console import seed  # noqa: E402
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.service.live import api_env, mint_tokens, uvicorn_api  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
ROLES = ("nurse", "patient", "engineer", "admin")


def slug(path: str) -> str:
    """A file-name part for a console path."""
    return re.sub(r"[^a-z0-9]+", "-", path.removeprefix("/console/").lower()).strip("-") or "home"


def log_in(page: Page, token: str) -> None:
    """Through the login form, as a person would."""
    page.goto("/console/login")
    page.fill("#token", token)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/(?!login).*"))


def shoot(page: Page, name: str) -> Path:
    """A full-page screenshot once the page has settled (plots drawn)."""
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def main() -> None:
    """Take every screen of every role in both sizes."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = SqliteStore(root / "service.db")
        readings = open_store(f"sqlite:///{root / 'readings.db'}")
        now = datetime.now(UTC)
        seed.seed(store, readings, seed.when(now))
        seed.raise_alert(store, readings, seed.infection(seed.INFECTED, now), now)
        tokens = mint_tokens(root / "tokens.json", seed.PRINCIPALS)
        (root / "vigil.toml").write_text(seed.SITE_TOML)
        env = api_env(f"sqlite:///{root / 'service.db'}", root / "tokens.json")
        env["VIGIL_SERVICE__READINGS_URL"] = f"sqlite:///{root / 'readings.db'}"
        env["VIGIL_CONFIG"] = str(root / "vigil.toml")
        taken: list[Path] = []
        with uvicorn_api(env, tokens) as api, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for size, (width, height) in SIZES.items():
                context = browser.new_context(
                    base_url=api.base, viewport={"width": width, "height": height}
                )
                page = context.new_page()
                page.goto("/console/login")
                taken.append(shoot(page, f"login-{size}"))
                context.close()
                for role in ROLES:
                    context = browser.new_context(
                        base_url=api.base, viewport={"width": width, "height": height}
                    )
                    page = context.new_page()
                    log_in(page, tokens[role])
                    links = page.eval_on_selector_all(
                        "header nav a", "links => links.map(a => a.getAttribute('href'))"
                    )
                    for path in links:
                        page.goto(path)
                        taken.append(shoot(page, f"{role}-{slug(path)}-{size}"))
                    context.close()
            # The Chinese screens of the nurse and the patient, as their browsers ask for them.
            for role in ("nurse", "patient"):
                context = browser.new_context(
                    base_url=api.base, viewport={"width": 1280, "height": 900}, locale="zh-CN"
                )
                page = context.new_page()
                log_in(page, tokens[role])
                taken.append(shoot(page, f"{role}-zh-desktop"))
                context.close()
            browser.close()
        store.close()
        readings.close()
    for path in taken:
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
