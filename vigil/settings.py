"""Configuration: environment variables (VIGIL_…, nested with __) over a TOML file over defaults."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel
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


class BrokerConfig(BaseModel):
    """An MQTT broker address."""

    host: str = "127.0.0.1"
    port: int = 1883


class GatewayConfig(BaseModel):
    """[gateway]: one gateway box."""

    id: str = "gw-1"
    outbox_path: Path = Path("var/gateway-outbox.db")
    outbox_max_readings: int = 10_000_000
    batch_max_readings: int = 2_000
    linger_s: float = 0.05
    max_inflight: int = 8
    site: str = "site-a"
    bridge_equipment: bool = True


class IngestConfig(BaseModel):
    """[ingest]: one ingest worker."""

    client_id: str = "vigil-ingest-1"
    shared_group: str | None = None
    mqtt_v5: bool = True
    max_messages_per_write: int = 32
    storage_url: str = "sqlite:///var/vigil.db"


class SimulatorConfig(BaseModel):
    """[simulator]: the virtual fleet."""

    seed: int = 7
    patches: int = 50
    equipment: int = 5
    ticks: int = 120
    tick_s: float = 60.0
    tick_wall_s: float = 0.05


class VigilSettings(BaseSettings):
    """Every setting of every vigil process; see the README's configuration reference."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_nested_delimiter="__")

    uplink_broker: BrokerConfig = BrokerConfig()
    site_broker: BrokerConfig = BrokerConfig()
    gateway: GatewayConfig = GatewayConfig()
    ingest: IngestConfig = IngestConfig()
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
        toml_path = os.environ.get("VIGIL_CONFIG", "vigil.toml")
        return (init_settings, env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's runtime settings."""
        g = self.gateway
        return GatewaySettings(
            gateway_id=g.id,
            outbox_path=g.outbox_path,
            outbox_max_readings=g.outbox_max_readings,
            uplink=UplinkSettings(
                host=self.uplink_broker.host, port=self.uplink_broker.port,
                batch_max_readings=g.batch_max_readings, linger_s=g.linger_s,
                max_inflight=g.max_inflight,
            ),
            site_broker=SiteBrokerSettings(
                host=self.site_broker.host, port=self.site_broker.port, site=g.site
            ) if g.bridge_equipment else None,
        )

    def ingest_settings(self) -> IngestSettings:
        """The ingest worker's runtime settings."""
        i = self.ingest
        return IngestSettings(
            host=self.uplink_broker.host, port=self.uplink_broker.port, client_id=i.client_id,
            shared_group=i.shared_group, mqtt_v5=i.mqtt_v5,
            max_messages_per_write=i.max_messages_per_write,
        )
