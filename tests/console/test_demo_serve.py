"""`vigil demo --serve`: one login per role, minted into a fresh registry beside the demo files."""

from __future__ import annotations

from pathlib import Path

from service.api.auth import registry_authenticator
from service.api.schemas import Role
from service.tokens import TokenRegistry
from vigil.demo_serve import DEMO_LOGINS, console_url, mint_demo_logins


def test_demo_logins_name_every_role_and_replace_earlier_ones(tmp_path: Path) -> None:
    first = dict(mint_demo_logins(tmp_path, "site-demo"))
    logins = dict(mint_demo_logins(tmp_path, "site-demo"))
    assert set(logins) == {name for name, _, _ in DEMO_LOGINS}
    authenticate = registry_authenticator(TokenRegistry(tmp_path / "tokens.json"))
    assert all(authenticate(token) is None for token in first.values())  # a fresh registry
    nurse = authenticate(logins["nurse"])
    assert nurse is not None and nurse.role is Role.HOSPITAL and nurse.subject == "site-demo"
    patient = authenticate(logins["patient (infected wound)"])
    assert patient is not None and patient.role is Role.PATIENT and patient.subject == "pt-0003"


def test_console_url() -> None:
    assert console_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/console/"
