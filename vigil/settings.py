"""Configuration: environment variables (VIGIL_…, nested with __) over a TOML file over defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.app import GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from ingest.worker import IngestSettings

if TYPE_CHECKING:
    from rules.runtime import RuntimeSettings
    from rules.worker import RulesWorkerSettings
    from service.worker import NotifyConfig, WorkerSettings

ENV_PREFIX = "VIGIL_"
CONFIG_ENV = "VIGIL_CONFIG"
DEFAULT_CONFIG_FILE = "vigil.toml"


class Section(BaseModel):
    """A TOML section; each field's docstring is its entry in docs/configuration.md."""

    # Unknown keys are errors so a misspelt setting is not silently ignored.
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")


class BrokerConfig(Section):
    """An MQTT broker address."""

    host: str = "127.0.0.1"
    """Host name or address."""
    port: int = 1883
    """TCP port."""


class GatewayConfig(Section):
    """[gateway]: one gateway box."""

    id: str = "gw-1"
    """Gateway id, part of the uplink topic and of every batch."""
    outbox_path: Path = Path("var/gateway-outbox.db")
    """SQLite file of the store-and-forward outbox."""
    outbox_max_readings: int = 10_000_000
    """Readings the outbox holds before it drops the oldest."""
    batch_max_readings: int = 2_000
    """Readings per uplink batch at most."""
    linger_s: float = 0.05
    """Seconds to wait for a small batch to fill."""
    max_inflight: int = 8
    """Unacknowledged uplink batches at most."""
    require_confirmation: bool = True
    """Keep a batch until ingest confirms it stored it (false: forget it on the broker's PUBACK)."""
    confirm_timeout_s: float = 30.0
    """Resend a published batch whose confirmation is this late; doubles while none arrive."""
    max_unconfirmed: int = 64
    """Batches published and not yet confirmed, at most (back-pressure)."""
    site: str = "site-a"
    """Site whose equipment topics the gateway bridges."""
    bridge_equipment: bool = True
    """Bridge equipment telemetry from the site broker."""


class IngestConfig(Section):
    """[ingest]: one ingest worker."""

    client_id: str = "vigil-ingest-1"
    """MQTT client id (persistent session)."""
    shared_group: str | None = None
    """MQTT 5 shared-subscription group; set it to run several workers."""
    mqtt_v5: bool = True
    """MQTT 5; off for 3.1.1 brokers."""
    max_messages_per_write: int = 32
    """Messages committed in one transaction at most."""
    confirm: bool = True
    """Publish a confirmation to each gateway for the batches it committed."""
    storage_url: str = "sqlite:///var/vigil.db"
    """Readings and alerts: sqlite:///path or postgresql://…"""


class RulesConfig(Section):
    """[rules]: the rules worker, or the rules run inside ingest (`vigil ingest run --rules`)."""

    client_id: str = "vigil-rules-1"
    """MQTT client id of the rules worker (persistent session)."""
    shared_group: str | None = "rules"
    """Shared-subscription group of the rules worker; keep one active member."""
    snapshot_path: Path | None = Path("var/rules-engine.snap")
    """Engine state file, written periodically and on exit, restored on start."""
    packs: list[str] = ["dressings", "equipment"]
    """Shipped rule packs to load."""
    rule_files: list[Path] = []
    """Extra YAML rule files."""
    registry_file: Path | None = None
    """YAML/JSON device registry {device: {kind, model, site, reference}}."""
    tick_interval_s: float = 15.0
    """Seconds between silence and composite evaluations."""
    snapshot_interval_s: float = 60.0
    """Seconds between engine snapshots."""


class ServiceConfig(Section):
    """[service]: the alert → ticket worker and the REST API."""

    store_url: str = "sqlite:///var/service.db"
    """Service store: sqlite:///path or postgresql://…"""
    client_id: str = "vigil-service-1"
    """MQTT client id of the ticket worker (persistent session)."""
    mqtt_v5: bool = True
    """MQTT 5; off for 3.1.1 brokers."""
    tick_interval_s: float = 60.0
    """Seconds between escalation, SLA breach and schedule runs."""
    webhook_urls: list[str] = []
    """Service-team webhook endpoints."""
    webhook_secret: SecretStr = SecretStr("")
    """HMAC secret the service-team webhooks are signed with."""
    notify_file: Path | None = None
    """JSON NotifyConfig: webhooks per engineer, site and patient, retry policy."""
    api_host: str = "127.0.0.1"
    """Address the REST API listens on."""
    api_port: int = 8080
    """Port the REST API listens on."""
    tokens_file: Path = Path("var/service-tokens.json")
    """API token registry (`vigil tokens add`, `list`, `revoke`): argon2id hashes, no secrets."""
    api_allowed_hosts: list[str] = ["localhost", "127.0.0.1", "testserver"]
    """Host names the REST API answers to (``Host:`` header); others get 400."""
    api_max_body_bytes: int = 1024 * 1024
    """Largest REST request body; larger ones get 413 before they are parsed."""
    api_rate_limit: str = "600/minute"
    """REST requests per token (per API process); then 429."""
    api_ticket_rate_limit: str = "30/hour"
    """Manual tickets a token may open (per API process); then 429."""
    api_auth_failure_limit: str = "30/minute"
    """Failed REST authentications per client address before 429."""
    readings_url: str | None = None
    """Readings store the API serves readings and alerts from; unset: none."""

    @model_validator(mode="after")
    def _secret_with_webhooks(self) -> ServiceConfig:
        if self.webhook_urls and not self.webhook_secret.get_secret_value():
            raise ValueError("webhook_urls need a webhook_secret to sign with")
        return self


class SimulatorConfig(Section):
    """[simulator]: the virtual fleet."""

    seed: int = 7
    """Random seed of the fleet."""
    patches: int = 50
    """Dressing patches."""
    equipment: int = 5
    """Pieces of equipment."""
    ticks: int = 120
    """Samples per device."""
    tick_s: float = 60.0
    """Simulated seconds between samples."""
    tick_wall_s: float = 0.05
    """Wall seconds between samples."""


class VigilSettings(BaseSettings):
    """Every setting of every vigil process; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", use_attribute_docstrings=True
    )

    uplink_broker: BrokerConfig = BrokerConfig()
    """[uplink_broker]: where gateways send batches and rules send alerts."""
    site_broker: BrokerConfig = BrokerConfig()
    """[site_broker]: where a site's equipment publishes."""
    gateway: GatewayConfig = GatewayConfig()
    ingest: IngestConfig = IngestConfig()
    rules: RulesConfig = RulesConfig()
    service: ServiceConfig = ServiceConfig()
    simulator: SimulatorConfig = SimulatorConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments, then the environment, then the TOML file named by VIGIL_CONFIG."""
        toml_path = os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's runtime settings."""
        g = self.gateway
        return GatewaySettings(
            gateway_id=g.id,
            outbox_path=g.outbox_path,
            outbox_max_readings=g.outbox_max_readings,
            uplink=UplinkSettings(
                host=self.uplink_broker.host,
                port=self.uplink_broker.port,
                batch_max_readings=g.batch_max_readings,
                linger_s=g.linger_s,
                max_inflight=g.max_inflight,
                require_confirmation=g.require_confirmation,
                confirm_timeout_s=g.confirm_timeout_s,
                max_unconfirmed=g.max_unconfirmed,
            ),
            site_broker=SiteBrokerSettings(
                host=self.site_broker.host, port=self.site_broker.port, site=g.site
            )
            if g.bridge_equipment
            else None,
        )

    def ingest_settings(self) -> IngestSettings:
        """The ingest worker's runtime settings."""
        i = self.ingest
        return IngestSettings(
            host=self.uplink_broker.host,
            port=self.uplink_broker.port,
            client_id=i.client_id,
            shared_group=i.shared_group,
            mqtt_v5=i.mqtt_v5,
            max_messages_per_write=i.max_messages_per_write,
            confirm=i.confirm,
        )

    def runtime_settings(self) -> RuntimeSettings:
        """The rule runtime's tick and snapshot settings."""
        from rules.runtime import RuntimeSettings

        r = self.rules
        return RuntimeSettings(
            snapshot_path=r.snapshot_path,
            snapshot_every_s=r.snapshot_interval_s,
            tick_every_s=r.tick_interval_s,
        )

    def rules_worker_settings(self) -> RulesWorkerSettings:
        """The broker-fed rules worker's connection settings."""
        from rules.worker import RulesWorkerSettings

        return RulesWorkerSettings(
            host=self.uplink_broker.host,
            port=self.uplink_broker.port,
            client_id=self.rules.client_id,
            shared_group=self.rules.shared_group,
        )

    def notify_config(self) -> NotifyConfig:
        """Webhook endpoints: the notify file's, plus the service-team URLs."""
        from service.worker import Endpoint, NotifyConfig

        s = self.service
        config = (
            NotifyConfig.model_validate_json(s.notify_file.read_text(encoding="utf-8"))
            if s.notify_file is not None
            else NotifyConfig()
        )
        secret = s.webhook_secret.get_secret_value()
        team = tuple(Endpoint(url=url, secret=secret) for url in s.webhook_urls)
        return config.model_copy(update={"service_team": config.service_team + team})

    def service_worker_settings(self) -> WorkerSettings:
        """The ticket worker's settings (broker = [uplink_broker], where the alerts go)."""
        from service.worker import WorkerSettings

        s = self.service
        return WorkerSettings(
            host=self.uplink_broker.host,
            port=self.uplink_broker.port,
            client_id=s.client_id,
            mqtt_v5=s.mqtt_v5,
            tick_s=s.tick_interval_s,
            notify=self.notify_config(),
        )


def env_name(*path: str) -> str:
    """The environment variable of a setting, e.g. ``env_name("rules", "packs")``."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def _default(value: Any) -> str:
    """A default as it would be written in the TOML file; unset ones as a dash."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value in ("", []):
        return "—"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = "[" + ", ".join(f'"{v}"' for v in value) + "]"
    elif isinstance(value, str | Path):
        text = f'"{value}"'
    else:
        text = str(value)
    return f"`{text}`"


def configuration_reference() -> str:
    """docs/configuration.md, generated from the models (``python -m vigil.settings``)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m vigil.settings > docs/configuration.md`; do not edit. -->",
        "",
        "Every vigil process reads one `VigilSettings` (`vigil/settings.py`). Each setting comes",
        "from, first match wins: the command-line option where there is one, the environment",
        f"variable `{ENV_PREFIX}<SECTION>__<KEY>`, the TOML file named by `{CONFIG_ENV}` (default",
        f"`{DEFAULT_CONFIG_FILE}` in the working directory; skipped if absent), then the default.",
        "Lists are JSON in the environment, e.g.",
        f"`{env_name('rules', 'packs')}='[\"dressings\"]'`. Unknown keys in the file are errors.",
        "",
        "```toml",
        "[uplink_broker]",
        'host = "broker.example"',
        "",
        "[rules]",
        'packs = ["dressings"]',
        "tick_interval_s = 30",
        "```",
    ]
    for name, field in VigilSettings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        title = field.description or (model.__doc__ or "").strip()
        title = title.split(": ", 1)[1] if title.startswith("[") else title
        lines += [
            "",
            f"## [{name}]",
            "",
            title[:1].upper() + title[1:].rstrip(".") + ".",
            "",
            "| key | environment variable | default | meaning |",
            "|---|---|---|---|",
        ]
        for key, sub in model.model_fields.items():
            lines.append(
                f"| `{key}` | `{env_name(name, key)}` | {_default(sub.default)} | "
                f"{sub.description or ''} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(configuration_reference(), end="")
