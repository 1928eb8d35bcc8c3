"""`vigil devices export-registry`: the service's installed base as the file ingest checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contract import DeviceKind
from infra.installed_base import load_installed_base
from service.store import open_service_store
from tests.service.factories import device, site
from vigil.cli import app


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = open_service_store(url)
    try:
        store.put_site(site("sh-ruijin"))
        store.put_site(site("bj-union"))
        store.put_device(device("endo-001", site_id="sh-ruijin"))
        store.put_device(device("patch-0001", kind=DeviceKind.PATCH, site_id="bj-union"))
    finally:
        store.close()
    return url


def _export(out: Path, store_url: str, *args: str) -> tuple[int, str]:
    env = {"COLUMNS": "200", "VIGIL_CONFIG": str(out.parent / "absent.toml")}
    argv = ["devices", "export-registry", "--out", str(out), "--store-url", store_url, *args]
    result = CliRunner().invoke(app, argv, env=env)
    return result.exit_code, result.output


def test_the_registry_holds_the_stores_devices_and_the_named_gateways(
    tmp_path: Path, store_url: str
) -> None:
    out = tmp_path / "installed-base.json"
    code, output = _export(out, store_url, "--gateway", "ward-3=sh-ruijin")
    assert code == 0, output
    base = load_installed_base(out)
    assert base.gateways == {"ward-3": "sh-ruijin"}
    assert base.problem("ward-3", "endo-001") is None
    assert base.devices["patch-0001"].kind is DeviceKind.PATCH
    assert "bj-union" in (base.problem("ward-3", "patch-0001") or "")
    # Exported again with another gateway: the first one is kept.
    code, output = _export(out, store_url, "--gateway", "home-7=bj-union")
    assert code == 0, output
    assert load_installed_base(out).gateways == {"ward-3": "sh-ruijin", "home-7": "bj-union"}
    assert not out.with_name(out.name + ".tmp").exists()


@pytest.mark.parametrize(
    ("gateway", "complaint"),
    [("ward-3", "expected GATEWAY_ID=SITE_ID"), ("ward-3=nowhere", "nowhere not in the service")],
)
def test_a_bad_gateway_is_refused_and_nothing_is_written(
    tmp_path: Path, store_url: str, gateway: str, complaint: str
) -> None:
    out = tmp_path / "installed-base.json"
    code, output = _export(out, store_url, "--gateway", gateway)
    assert code == 2 and complaint in output and "Traceback" not in output
    assert not out.exists()


def test_without_gateways_it_warns_that_everything_would_be_refused(
    tmp_path: Path, store_url: str
) -> None:
    code, output = _export(tmp_path / "installed-base.json", store_url)
    assert code == 0 and "no gateway listed" in output
