"""Settings: the TOML file named by VIGIL_CONFIG, VIGIL_… variables over it, defaults under it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from contract import DeviceKind, Severity
from service.model import Device, Tier
from service.sla import Clock, deadline, tier_for
from tests.service.factories import device, ticket
from vigil.settings import VigilSettings

TOML = """
[uplink_broker]
host = "broker.file"
port = 2883

[rules]
packs = ["equipment"]
tick_interval_s = 30
snapshot_path = "/data/rules.snap"

[service]
store_url = "sqlite:///file-service.db"
webhook_urls = ["https://desk.example/hook"]
webhook_secret = "s3cret"
api_port = 9090
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vigil.toml"
    path.write_text(TOML)
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    return path


def test_the_file_named_by_vigil_config_is_read(config: Path) -> None:
    s = VigilSettings()
    assert (s.uplink_broker.host, s.uplink_broker.port) == ("broker.file", 2883)
    assert s.rules.packs == ["equipment"] and s.rules.tick_interval_s == 30.0
    assert s.rules.snapshot_path == Path("/data/rules.snap")
    assert s.service.store_url == "sqlite:///file-service.db" and s.service.api_port == 9090
    # Untouched keys keep their defaults, in touched and untouched sections.
    assert s.rules.client_id == "vigil-rules-1" and s.ingest.client_id == "vigil-ingest-1"


def test_environment_wins_over_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_UPLINK_BROKER__PORT", "3883")
    monkeypatch.setenv("VIGIL_RULES__PACKS", '["dressings", "equipment"]')
    monkeypatch.setenv("VIGIL_SERVICE__STORE_URL", "postgresql://env/vigil")
    s = VigilSettings()
    assert (s.uplink_broker.host, s.uplink_broker.port) == ("broker.file", 3883)
    assert s.rules.packs == ["dressings", "equipment"]
    assert s.rules.tick_interval_s == 30.0  # from the file: the environment does not name it
    assert s.service.store_url == "postgresql://env/vigil"


def test_settings_reach_the_runtime_objects(config: Path) -> None:
    s = VigilSettings()
    runtime = s.runtime_settings()
    assert (runtime.tick_every_s, runtime.snapshot_path) == (30.0, Path("/data/rules.snap"))
    worker = s.rules_worker_settings()
    assert (worker.host, worker.port, worker.shared_group) == ("broker.file", 2883, "rules")
    service = s.service_worker_settings()
    assert (service.host, service.port) == ("broker.file", 2883)
    [team] = service.notify.service_team
    assert (team.url, team.secret) == ("https://desk.example/hook", "s3cret")


def test_without_a_file_the_defaults_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    s = VigilSettings()
    assert s.uplink_broker.port == 1883 and s.service.store_url == "sqlite:///var/service.db"


def test_a_misspelt_key_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[rules]\ntick_intervall_s = 5\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    with pytest.raises(ValidationError, match="tick_intervall_s"):
        VigilSettings()


def test_webhooks_without_a_secret_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("VIGIL_SERVICE__WEBHOOK_URLS", '["https://desk.example/hook"]')
    with pytest.raises(ValidationError, match="webhook_secret"):
        VigilSettings()


SLA_TOML = """
[sla]
urgent_from = "warning"
general_respond_h = 4
general_business_hours = true

[calendars.cn-hospital]
opens = "08:00"
closes = "18:00"
holidays = ["2026-10-01"]

[sites.sh-ruijin]
timezone = "Asia/Shanghai"
calendar = "cn-hospital"
holidays = ["2026-03-09"]

[schedules]
inspection_interval_days = 180
inspected_kinds = ["endoscope"]
"""


class _Devices:
    def device(self, device_id: str) -> Device | None:
        return device(device_id, site_id="sh-ruijin") if device_id == "ct-1" else None


def test_sla_tiers_site_calendars_and_schedules_come_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(SLA_TOML)
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    s = VigilSettings()
    assert set(s.calendars) == {"weekdays", "cn-hospital"}  # the built-in one stays
    sla = s.service_worker_settings(_Devices()).sla
    assert tier_for(Severity.WARNING, sla) is Tier.URGENT
    shanghai = ZoneInfo("Asia/Shanghai")
    friday = datetime(2026, 3, 6, 16, tzinfo=shanghai)
    # 16:00–18:00 Friday in Shanghai, Monday the site's holiday, 08:00–10:00 Tuesday.
    general = ticket(device_id="ct-1", tier=Tier.GENERAL, at=friday)
    assert deadline(general, Clock.RESPOND, sla) == datetime(2026, 3, 10, 10, tzinfo=shanghai)
    # A site without its own entry: the [sla] default, weekdays 08:00–17:00 UTC.
    other = ticket(device_id="elsewhere", tier=Tier.GENERAL, at=friday)
    assert deadline(other, Clock.RESPOND, sla) == datetime(2026, 3, 6, 12, tzinfo=UTC)
    assert s.business_calendar("sh-ruijin").holidays == {date(2026, 10, 1), date(2026, 3, 9)}
    schedules = s.schedule_config()
    assert schedules.inspection_interval == timedelta(days=180)
    assert schedules.inspected_kinds == {DeviceKind.ENDOSCOPE}


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('[sites.x]\ntimezone = "Asia/Shangai"\n', "unknown timezone"),
        ('[sites.x]\ncalendar = "cn"\n', r"no \[calendars.cn\]"),
        ('[sla]\ncalendar = "cn"\n', r"no \[calendars.cn\]"),
        ('[calendars.late]\nopens = "18:00"\ncloses = "08:00"\n', "before closes"),
        ("[sla]\nurgent_respond_h = 0\n", "urgent_respond_h"),
    ],
)
def test_bad_sla_settings_are_refused_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, error: str
) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(toml)
    monkeypatch.setenv("VIGIL_CONFIG", str(path))
    with pytest.raises(ValidationError, match=error):
        VigilSettings()
