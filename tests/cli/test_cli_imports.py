"""Per-role installs: the gateway's commands load nothing only the server role installs."""

from __future__ import annotations

import subprocess
import sys

# Installed by `vigil[server]` or `vigil[sim]` only, never by `vigil[gateway]`.
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "matplotlib", "psycopg", "httpx", "amqtt")
SIM_ONLY = ("numpy", "yaml")

GATEWAY_MODULES = (
    "vigil.cli",  # `vigil --help` loads every command group
    "vigil.commands.gateway",
    "vigil.settings",
    "vigil.stopping",
    "gateway.app",
    "gateway.profiles",
    "gateway.keystore",
)


def _loaded_after_importing(modules: tuple[str, ...], candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(' '.join(m for m in {candidates!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.split()


def test_gateway_commands_import_no_server_library() -> None:
    assert _loaded_after_importing(GATEWAY_MODULES, SERVER_ONLY + SIM_ONLY) == []


def test_the_probe_sees_a_server_library_when_one_is_imported() -> None:
    # Guards the test above against passing because the probe cannot see anything.
    assert _loaded_after_importing(("service.report",), ("matplotlib",)) == ["matplotlib"]
