"""`vigil retention run [--dry-run]` on both stores of each backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.telemetry import open_store
from infra.time_us import now_us
from service.store import open_service_store
from tests.retention.seeds import seed_service, seed_telemetry
from vigil.cli import app

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgres"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(telemetry store URL, service store URL) of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vigil.db'}", f"sqlite:///{tmp_path / 'service.db'}"
    dsn = str(request.getfixturevalue("timescale_dsn"))
    return dsn, dsn  # one database may hold both (the service tables are prefixed)


def _retention(urls: tuple[str, str], *args: str) -> str:
    env = {
        "COLUMNS": "200",
        "VIGIL_CONFIG": "/nonexistent.toml",
        "VIGIL_INGEST__STORAGE_URL": urls[0],
        "VIGIL_SERVICE__STORE_URL": urls[1],
    }
    result = runner.invoke(app, ["retention", "run", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _counts(output: str) -> dict[tuple[str, str], int]:
    """(store, kind) → the number in the table."""
    counts = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 5 and cells[0] in ("telemetry", "service"):
            counts[(cells[0], cells[1])] = int(cells[2].replace(",", ""))
    return counts


EXPECTED = {
    ("telemetry", "readings"): 3,
    ("telemetry", "batch_claims"): 0,  # claims are a few seconds old
    ("telemetry", "dead_letters"): 1,
    ("telemetry", "baselines"): 1,  # the patch last heard 40 days ago
    ("service", "notifications"): 1,
    ("service", "deliveries"): 1,
    ("service", "dead_letters"): 1,
}


def test_a_dry_run_removes_nothing_and_a_run_removes_what_is_old(urls: tuple[str, str]) -> None:
    now = now_us()
    with open_store(urls[0]) as telemetry:
        telemetry.migrate()
        seed_telemetry(telemetry, now)
    service = open_service_store(urls[1])
    seed_service(service, now)
    service.close()

    dry = _retention(urls, "--dry-run")
    assert _counts(dry) == EXPECTED and "would remove" in dry and "nothing was removed" in dry
    assert _counts(_retention(urls, "--dry-run")) == EXPECTED  # still all there

    done = _retention(urls)
    assert _counts(done) == EXPECTED and "removed" in done
    assert ("delete" if urls[0].startswith("sqlite") else "drop_chunks") in done
    assert _counts(_retention(urls)) == dict.fromkeys(EXPECTED, 0)
    with open_store(urls[0]) as telemetry:
        assert {r.device_id for r in telemetry.fetch_readings()} == {"p-1"}
        assert [x.reason for x in telemetry.dead_letters()] == ["1 days"]
        assert [b.device_id for b in telemetry.baselines(["p-40", "p-1"])] == ["p-1"]
    service = open_service_store(urls[1])
    assert [i.key for i in service.notifications()] == ["new"]
    assert [d.event_id for d in service.deliveries()] == ["new"]
    assert len(service.dead_letters()) == 1
    service.close()


def test_one_store_at_a_time(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path / 'vigil.db'}", f"sqlite:///{tmp_path / 'service.db'}")
    with open_store(urls[0]) as telemetry:
        telemetry.migrate()
    output = _retention(urls, "--no-service")
    assert {store for store, _ in _counts(output)} == {"telemetry"}


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path / 'none.db'}", f"sqlite:///{tmp_path / 'nor.db'}")
    output = _retention(urls)
    assert output.count("nothing to prune") == 2
    assert not list(tmp_path.iterdir())


def test_an_unreachable_store_fails_without_showing_its_password(tmp_path: Path) -> None:
    env = {
        "VIGIL_CONFIG": "/nonexistent.toml",
        "VIGIL_INGEST__STORAGE_URL": "postgresql://vigil:s3cret@127.0.0.1:1/vigil",
    }
    result = runner.invoke(app, ["retention", "run", "--no-service"], env=env)
    assert result.exit_code == 1
    assert "telemetry store" in result.output and "s3cret" not in result.output
