"""What docs/gateway-box.md installs: `vigil[gateway]` carries what the box's new modules load."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_ON_A_GATEWAY = (
    "fastapi", "uvicorn", "matplotlib", "psycopg", "httpx", "amqtt", "numpy", "yaml",
)  # fmt: skip


def test_the_gateway_extra_has_ble_and_cryptography() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gateway = {r.split("==")[0] for r in project["optional-dependencies"]["gateway"]}
    assert {"bleak", "bleak-retry-connector", "cryptography"} <= gateway


def test_sd_notify_the_doctor_and_the_contract_document_load_no_server_library() -> None:
    code = (
        "import sys\n"
        "import gateway.sd_notify, gateway.doctor, gateway.doctor_clock, gateway.doctor_certs\n"
        "import contract.asyncapi\n"
        "from contract.asyncapi import document\n"
        "from cryptography import x509\n"
        "document()\n"
        f"print(' '.join(m for m in {NOT_ON_A_GATEWAY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == []
