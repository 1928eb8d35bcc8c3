"""Configuration: environment variables (VIGIL_…, nested with __) over a TOML file over defaults."""

from __future__ import annotations

import os
import typing
from datetime import date, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contract import DeviceKind, Severity
from gateway.app import GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.remote import RemoteSettings
from gateway.uplink import UplinkSettings
from infra.confirm_keys import KeyFileError, read_key
from infra.mqtt_tls import MqttTls, TlsFilesError

if TYPE_CHECKING:
    from infra.retention import RetentionPolicy
    from ingest.worker import IngestSettings
    from rules.runtime import RuntimeSettings
    from rules.worker import RulesWorkerSettings
    from service.business_hours import BusinessCalendar
    from service.compensation import CompensationPolicy
    from service.schedules import ScheduleConfig
    from service.sla import DeviceDirectory, SlaConfig
    from service.worker import NotifyConfig, WorkerSettings

ENV_PREFIX = "VIGIL_"
CONFIG_ENV = "VIGIL_CONFIG"
DEFAULT_CONFIG_FILE = "vigil.toml"


class Section(BaseModel):
    """A TOML section; each field's docstring is its entry in docs/configuration.md."""

    # Unknown keys are errors so a misspelt setting is not silently ignored.
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")


class BrokerConfig(Section):
    """An MQTT broker address, and this process's TLS identity on it."""

    host: str = "127.0.0.1"
    """Host name or address (with TLS: a name the broker's certificate is issued for)."""
    port: int = 1883
    """TCP port (the TLS listener of `vigil broker config` is 8883)."""
    tls_ca_file: Path | None = None
    """CA certificate the broker's is checked against; set: connect with TLS, unset: plain TCP."""
    tls_cert_file: Path | None = None
    """This process's client certificate: its CN is the identity the broker's ACL sees."""
    tls_key_file: Path | None = None
    """The private key of `tls_cert_file`."""

    @model_validator(mode="after")
    def _tls_files_together(self) -> BrokerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_cert_file is not None and self.tls_ca_file is None:
            raise ValueError("a client certificate needs tls_ca_file to check the broker with")
        return self

    def tls(self) -> MqttTls | None:
        """The TLS files to connect with, or None for plain TCP (not checked: see check_tls)."""
        if self.tls_ca_file is None:
            return None
        return MqttTls(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)


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
    max_reading_age_s: float = 400 * 86_400.0
    """Dead-letter readings older than this (s, gateway clock); default: a year plus a month."""
    max_clock_skew_s: float = 300.0
    """Dead-letter readings further ahead of the gateway clock than this (s)."""
    dead_letter_max_bytes: int = 64 * 1024 * 1024
    """Bytes of dead letters the outbox keeps; the oldest are dropped first, and counted."""
    confirm_key_file: Path | None = None
    """Its confirmation key (from `vigil pki client`); set: MAC-less confirmations are refused."""
    clock_ntp: bool = True
    """The box keeps time by NTP (BLE readings wait for a sync); false: a battery-backed RTC."""
    health_every_s: float = 60.0
    """Seconds between health summaries on `vigil/v1/gateways/<id>/health` (retained)."""
    metrics_port: int | None = None
    """Serve the gateway's Prometheus metrics (BLE counters included) on this port; unset: off."""
    remote: bool = False
    """Presence (last will) and remote commands over MQTT 5 on both brokers (gateway/remote.py)."""


class IngestConfig(Section):
    """[ingest]: one ingest worker."""

    replica: Annotated[int, Field(ge=0)] = 1
    """This worker's number among the replicas of a shared group; names its MQTT client id."""
    client_id: str | None = None
    """MQTT client id (persistent session), unique per replica; default `vigil-ingest-<replica>`."""
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
    max_reading_age_s: float = 400 * 86_400.0
    """Dead-letter readings older than this (s, ingest clock); default: a year plus a month."""
    max_clock_skew_s: float = 300.0
    """Dead-letter readings further ahead of the ingest clock than this (s)."""
    confirm_key_file: Path | None = None
    """Master secret for confirmation MACs (the PKI's confirm-master.key); unset: no MACs."""
    installed_base_file: Path | None = None
    """Gateway and device sites (YAML/JSON); readings of other sites' devices are dead-lettered."""
    unregistered_alert_after: Annotated[int, Field(ge=1)] = 100
    """Unregistered readings from one gateway within the window that raise a gateway alert."""
    unregistered_alert_window_s: Annotated[float, Field(gt=0)] = 3600.0
    """The window of `unregistered_alert_after` (s); at most one alert per gateway in it."""

    @model_validator(mode="after")
    def _client_id_from_replica(self) -> IngestConfig:
        # Stable across restarts (the broker keeps the session under it), distinct per replica.
        if self.client_id is None:
            self.client_id = f"vigil-ingest-{self.replica}"
        return self


class RulesConfig(Section):
    """[rules]: the rules worker, or the rules run inside ingest (`vigil ingest run --rules`)."""

    client_id: str = "vigil-rules-1"
    """MQTT client id of the rules worker (persistent session); default vigil-rules-<replica>."""
    replica: int | None = None
    """Replica number N of several `vigil rules run` (PostgreSQL): client id vigil-rules-N."""
    shared_group: str | None = "rules"
    """Shared-subscription group of a SQLite deployment's one worker (replicas use none)."""
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
    baselines_interval_s: float = Field(default=60.0, gt=0)
    """Seconds between writes of the learnt wound baselines that changed (the ward board's Δ)."""


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
    remote: bool = False
    """Also consume presence, gateway health and command results, and send commands (MQTT 5)."""
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
    audit_key_file: Path | None = None
    """Ed25519 key (`vigil audit keygen`) signing audit rows and checkpoints, off the DB host."""
    audit_checkpoint_file: Path | None = None
    """Where the worker appends a signed checkpoint of the audit chain every tick; unset: none."""

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
    device_certs_dir: Path | None = None
    """Per-device `<id>.crt`/`.key` (a PKI's issued/); unset: all use [site_broker]'s cert."""
    remote: bool = False
    """Equipment keeps MQTT 5 presence (last will) and answers remote commands."""


class FhirConfig(Section):
    """[fhir]: pushing readings to a hospital's FHIR server (`vigil fhir upload`)."""

    base_url: str = ""
    """FHIR R4 base URL the transaction Bundles are posted to; empty: no upload."""
    auth: Literal["none", "bearer", "client_credentials"] = "none"
    """How to authenticate: no token, `bearer_token`, or OAuth2 client credentials."""
    bearer_token: SecretStr = SecretStr("")
    """Static bearer token (auth = "bearer")."""
    token_url: str = ""
    """OAuth2 token endpoint (auth = "client_credentials")."""
    client_id: str = ""
    """OAuth2 client id (auth = "client_credentials")."""
    client_secret: SecretStr = SecretStr("")
    """OAuth2 client secret, sent as HTTP Basic (auth = "client_credentials")."""
    scope: str = ""
    """OAuth2 scope to ask for, e.g. "system/Observation.write"; empty: none."""
    gateway_id: str | None = None
    """Id of the personal health gateway the Observations name; default [gateway] id."""
    sites: list[str] = []
    """Upload only devices of these sites; empty: every site."""
    outbox_path: Path = Path("var/fhir-outbox.db")
    """SQLite file of the upload outbox."""
    readings_url: str | None = None
    """Readings store to upload from; default [ingest] storage_url."""
    bundle_size: int = Field(100, ge=1, le=1000)
    """Observations per transaction Bundle at most."""
    poll_s: float = Field(30.0, gt=0)
    """Seconds between upload passes."""
    lookback_s: float = Field(3600.0, ge=0)
    """Each pass looks this far behind the newest reading seen, for readings that came late."""
    backoff_s: float = Field(5.0, gt=0)
    """First delay after a failed upload; doubles per failure."""
    backoff_cap_s: float = Field(300.0, gt=0)
    """Longest delay between tries of one Observation."""
    timeout_s: float = Field(30.0, gt=0)
    """HTTP timeout of one request to the FHIR server or token endpoint."""

    @model_validator(mode="after")
    def _credentials(self) -> FhirConfig:
        if self.auth == "bearer" and not self.bearer_token.get_secret_value():
            raise ValueError('auth = "bearer" needs a bearer_token')
        if self.auth == "client_credentials" and not (
            self.token_url and self.client_id and self.client_secret.get_secret_value()
        ):
            raise ValueError(
                'auth = "client_credentials" needs token_url, client_id, client_secret'
            )
        return self


BUILTIN_CALENDAR = "weekdays"


def _known_zone(name: str) -> str:
    from service.business_hours import check_timezone

    return check_timezone(name)


def _hours(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(hours=value)


# An IANA time zone name, checked when the settings are read rather than at the first SLA use.
TimeZone = Annotated[str, AfterValidator(_known_zone)]


class SlaTargetsConfig(Section):
    """[sla]: service-level targets of the two ticket tiers and where their clocks count."""

    urgent_from: Literal["info", "warning", "critical"] = "critical"
    """Lowest alert severity that opens an urgent (rather than a general) ticket."""
    urgent_respond_h: float = Field(2.0, gt=0)
    """Hours an urgent ticket may wait for an engineer to accept it."""
    urgent_resolve_h: float = Field(24.0, gt=0)
    """Hours until an urgent ticket's fault must be resolved."""
    urgent_business_hours: bool = False
    """Count urgent SLA time only in the site's business hours (false: around the clock)."""
    general_respond_h: float = Field(4.0, gt=0)
    """Hours a general ticket may wait for an engineer to accept it."""
    general_resolve_h: float = Field(48.0, gt=0)
    """Hours until a general ticket's fault must be resolved."""
    general_business_hours: bool = False
    """Count general SLA time only in the site's business hours (false: around the clock)."""
    calendar: str = BUILTIN_CALENDAR
    """[calendars.<name>] of sites not listed under [sites]."""
    timezone: TimeZone = "UTC"
    """IANA time zone of sites not listed under [sites]."""
    urgent_undispatched_h: float | None = Field(None, gt=0)
    """Hours an urgent ticket may wait unassigned before the desk is told (unset: respond)."""
    general_undispatched_h: float | None = Field(None, gt=0)
    """Hours a general ticket may wait unassigned before the desk is told (unset: respond)."""


class CalendarConfig(Section):
    """[calendars.<name>]: opening hours sites keep, by name (`weekdays` is built in)."""

    weekdays: list[int] = [0, 1, 2, 3, 4]
    """Open days of the week, Monday = 0 … Sunday = 6."""
    opens: time = time(8, 0)
    """Local opening time, e.g. "08:00"."""
    closes: time = time(17, 0)
    """Local closing time, e.g. "18:00"."""
    holidays: list[date] = []
    """Dates closed all day at every site on this calendar, e.g. ["2026-10-01"]."""

    @model_validator(mode="after")
    def _hours(self) -> CalendarConfig:
        if not self.weekdays or not set(self.weekdays) <= set(range(7)):
            raise ValueError(f"weekdays must be 0 (Monday) to 6, got {self.weekdays}")
        if self.opens >= self.closes:
            raise ValueError(f"opens {self.opens} must be before closes {self.closes}")
        return self


class SiteConfig(Section):
    """[sites.<site_id>]: a site's time zone and business calendar (e.g. `[sites.sh-ruijin]`)."""

    timezone: TimeZone = "UTC"
    """IANA time zone of the site, e.g. "Asia/Shanghai"; business hours are local to it."""
    calendar: str = BUILTIN_CALENDAR
    """The [calendars.<name>] whose opening hours the site keeps."""
    holidays: list[date] = []
    """The site's own closed dates, on top of its calendar's."""


class SchedulingConfig(Section):
    """[schedules]: the preventive-maintenance and warranty tickets the service worker opens."""

    inspection_interval_days: int = Field(90, gt=0)
    """Days between preventive inspections of a device."""
    inspected_kinds: list[DeviceKind] = [DeviceKind.ULTRASOUND, DeviceKind.ENDOSCOPE]
    """Device kinds that get preventive inspections (dressings are replaced, not maintained)."""
    warranty_notice_days: int = Field(30, ge=0)
    """Days before a warranty ends that its reminder ticket opens."""
    warranty_grace_days: int = Field(30, ge=0)
    """Days after a warranty ended that a reminder still opens (older ends are old news)."""


class CompensationConfig(Section):
    """[compensation]: the service credit an SLA breach earns (amounts in cents; 0: none)."""

    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    """ISO 4217 currency of the credits."""
    urgent_respond_credit: int = Field(0, ge=0, le=10**12)
    """Cents credited when an urgent ticket's respond clock is breached."""
    urgent_resolve_credit: int = Field(0, ge=0, le=10**12)
    """Cents credited when an urgent ticket's resolve clock is breached."""
    general_respond_credit: int = Field(0, ge=0, le=10**12)
    """Cents credited when a general ticket's respond clock is breached."""
    general_resolve_credit: int = Field(0, ge=0, le=10**12)
    """Cents credited when a general ticket's resolve clock is breached."""
    contract_only: bool = False
    """Credit only breaches of devices under a service contract."""


class RetentionConfig(Section):
    """[retention]: how long records are kept before ingest, the service and gateways prune them."""

    readings_days: int = Field(400, ge=1)
    """Days readings are kept (an engineering default: a year plus a month; not clinical)."""
    dead_letters_days: int = Field(90, ge=1)
    """Days dead letters are kept: ingest's, the service worker's and each gateway outbox's."""
    batch_claims_days: int | None = Field(None, ge=1)
    """Days a stored batch is known, so a resend is a duplicate; >= readings_days (unset: equal)."""
    notifications_days: int = Field(90, ge=1)
    """Days delivered or given-up notifications and their delivery attempts are kept."""
    baselines_days: int = Field(30, ge=1)
    """Days a wound baseline is kept after its patch's last reading (engineering default)."""
    interval_s: float = Field(3600.0, gt=0)
    """Seconds between prunes in `vigil ingest run`, `vigil service run` and the gateway."""

    @model_validator(mode="after")
    def _claims_outlive_readings(self) -> RetentionConfig:
        claims = self.batch_claims_days
        if claims is not None and claims < self.readings_days:
            raise ValueError(
                f"batch_claims_days ({claims}) must be at least readings_days"
                f" ({self.readings_days}): a batch resent after its claim was forgotten would"
                " store its already pruned readings again"
            )
        return self


class MetricsConfig(Section):
    """[metrics]: where each process serves its Prometheus metrics (docs/operations.md)."""

    host: str = "0.0.0.0"
    """Address the metrics endpoints listen on (every process's; the gateway's included)."""
    ingest_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Port of `vigil ingest run`'s metrics (its in-process rules included); unset: off."""
    rules_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Port of `vigil rules run`'s metrics; unset: off."""
    service_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Port of `vigil service run`'s metrics (tickets, SLA, notifications); unset: off."""
    api_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Port of `vigil service api`'s metrics (requests, latency); unset: off."""


class LoggingConfig(Section):
    """[logging]: how every process logs (stderr); `vigil --log-format/--log-level` override."""

    format: Literal["text", "json"] = "text"
    """"text" lines, or "json": one JSON object a line with its context as keys."""
    level: str = "WARNING"
    """DEBUG, INFO, WARNING or ERROR; start-up lines (what a process connected to) always show."""

    @field_validator("level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        from infra.logs import level_of

        level_of(level)
        return level.upper()


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
    sla: SlaTargetsConfig = SlaTargetsConfig()
    calendars: dict[str, CalendarConfig] = {BUILTIN_CALENDAR: CalendarConfig()}
    """[calendars.<name>]: opening hours sites keep, by name (`weekdays` is built in)."""
    sites: dict[str, SiteConfig] = {}
    """[sites.<site_id>]: a site's time zone and business calendar (e.g. `[sites.sh-ruijin]`)."""
    schedules: SchedulingConfig = SchedulingConfig()
    compensation: CompensationConfig = CompensationConfig()
    retention: RetentionConfig = RetentionConfig()
    fhir: FhirConfig = FhirConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("calendars", mode="after")
    @classmethod
    def _builtin_calendar(cls, calendars: dict[str, CalendarConfig]) -> dict[str, CalendarConfig]:
        # A file that defines its own calendars keeps the built-in one unless it redefines it.
        return {BUILTIN_CALENDAR: CalendarConfig(), **calendars}

    @model_validator(mode="after")
    def _calendars_exist(self) -> VigilSettings:
        named = {"[sla] calendar": self.sla.calendar} | {
            f"[sites.{site}] calendar": s.calendar for site, s in self.sites.items()
        }
        for where, name in named.items():
            if name not in self.calendars:
                raise ValueError(f"{where} = {name!r}: no [calendars.{name}] is defined")
        return self

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

    def check_tls(self, section: Literal["uplink_broker", "site_broker"]) -> MqttTls | None:
        """A broker section's TLS files, checked, or None for plain TCP.

        Raises TlsFilesError naming the section and the file that is missing or unusable.
        """
        broker: BrokerConfig = getattr(self, section)
        tls = broker.tls()
        if tls is not None:
            try:
                tls.check()
            except TlsFilesError as exc:
                raise TlsFilesError(f"[{section}] {exc}") from None
        return tls

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's runtime settings; reads its TLS and key files (TlsFilesError,
        KeyFileError if they are missing or unusable)."""
        g = self.gateway
        return GatewaySettings(
            gateway_id=g.id,
            outbox_path=g.outbox_path,
            outbox_max_readings=g.outbox_max_readings,
            max_reading_age_s=g.max_reading_age_s,
            max_clock_skew_s=g.max_clock_skew_s,
            dead_letter_max_bytes=g.dead_letter_max_bytes,
            health_every_s=g.health_every_s,
            uplink=UplinkSettings(
                host=self.uplink_broker.host,
                port=self.uplink_broker.port,
                batch_max_readings=g.batch_max_readings,
                linger_s=g.linger_s,
                max_inflight=g.max_inflight,
                require_confirmation=g.require_confirmation,
                confirm_timeout_s=g.confirm_timeout_s,
                max_unconfirmed=g.max_unconfirmed,
                tls=self.check_tls("uplink_broker"),
                confirm_key=_key("[gateway] confirm_key_file", g.confirm_key_file),
            ),
            site_broker=self.site_broker_settings() if g.bridge_equipment else None,
            remote=RemoteSettings() if g.remote else None,
        )

    def site_broker_settings(self) -> SiteBrokerSettings:
        """Where the gateway's equipment bridge consumes; reads its TLS files."""
        b = self.site_broker
        return SiteBrokerSettings(
            host=b.host, port=b.port, site=self.gateway.site, tls=self.check_tls("site_broker")
        )

    def ingest_settings(self) -> IngestSettings:
        """The ingest worker's runtime settings; reads its TLS and key files."""
        from ingest.worker import IngestSettings  # a server module: numpy, not on a gateway

        i = self.ingest
        return IngestSettings(
            host=self.uplink_broker.host,
            port=self.uplink_broker.port,
            client_id=i.client_id or f"vigil-ingest-{i.replica}",
            shared_group=i.shared_group,
            mqtt_v5=i.mqtt_v5,
            max_messages_per_write=i.max_messages_per_write,
            confirm=i.confirm,
            max_reading_age_s=i.max_reading_age_s,
            max_clock_skew_s=i.max_clock_skew_s,
            tls=self.check_tls("uplink_broker"),
            confirm_master_key=_key("[ingest] confirm_key_file", i.confirm_key_file),
            installed_base_file=i.installed_base_file,
            unregistered_alert_after=i.unregistered_alert_after,
            unregistered_alert_window_s=i.unregistered_alert_window_s,
        )

    def runtime_settings(self) -> RuntimeSettings:
        """The rule runtime's tick and snapshot settings."""
        from rules.runtime import RuntimeSettings

        r = self.rules
        return RuntimeSettings(
            snapshot_path=r.snapshot_path,
            snapshot_every_s=r.snapshot_interval_s,
            tick_every_s=r.tick_interval_s,
            baselines_every_s=r.baselines_interval_s,
            baselines_keep_s=self.retention.baselines_days * 86_400.0,
        )

    def rules_worker_settings(self, replica: int | None = None) -> RulesWorkerSettings:
        """The broker-fed rules worker's connection settings (``replica`` overrides the file's).

        A replica's client id is ``vigil-rules-<N>``, stable across restarts, unless
        ``client_id`` is set explicitly.
        """
        from rules.worker import RulesWorkerSettings

        r = self.rules
        number = replica if replica is not None else r.replica
        client_id = r.client_id
        if number is not None and "client_id" not in r.model_fields_set:
            client_id = f"vigil-rules-{number}"
        return RulesWorkerSettings(
            host=self.uplink_broker.host,
            port=self.uplink_broker.port,
            client_id=client_id,
            shared_group=r.shared_group,
            tls=self.check_tls("uplink_broker"),
            installed_base_file=self.ingest.installed_base_file,
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

    def business_calendar(self, site_id: str | None = None) -> BusinessCalendar:
        """The business calendar of ``site_id`` in its time zone (None: the [sla] default)."""
        from service.business_hours import BusinessCalendar

        site = self.sites.get(site_id) if site_id is not None else None
        name, zone = (site or self.sla).calendar, (site or self.sla).timezone
        calendar = self.calendars[name]
        return BusinessCalendar(
            timezone=zone,
            weekdays=frozenset(calendar.weekdays),
            opens=calendar.opens,
            closes=calendar.closes,
            holidays=frozenset(calendar.holidays) | frozenset(site.holidays if site else ()),
        )

    def sla_config(self, devices: DeviceDirectory | None = None) -> SlaConfig:
        """The SLA tiers and site calendars; ``devices`` tells the site of a ticket's device."""
        from service.model import Tier
        from service.sla import SlaConfig, TierPolicy

        a = self.sla
        config = SlaConfig(
            tiers={
                Tier.URGENT: TierPolicy(
                    respond=timedelta(hours=a.urgent_respond_h),
                    resolve=timedelta(hours=a.urgent_resolve_h),
                    business_hours=a.urgent_business_hours,
                    undispatched=_hours(a.urgent_undispatched_h),
                ),
                Tier.GENERAL: TierPolicy(
                    respond=timedelta(hours=a.general_respond_h),
                    resolve=timedelta(hours=a.general_resolve_h),
                    business_hours=a.general_business_hours,
                    undispatched=_hours(a.general_undispatched_h),
                ),
            },
            urgent_from=Severity[a.urgent_from.upper()],
            calendar=self.business_calendar(),
            site_calendars={site: self.business_calendar(site) for site in self.sites},
        )
        return config if devices is None else config.located(devices)

    def schedule_config(self) -> ScheduleConfig:
        """When preventive-maintenance and warranty tickets open."""
        from service.schedules import ScheduleConfig

        s = self.schedules
        return ScheduleConfig(
            inspection_interval=timedelta(days=s.inspection_interval_days),
            warranty_notice=timedelta(days=s.warranty_notice_days),
            warranty_grace=timedelta(days=s.warranty_grace_days),
            inspected_kinds=frozenset(s.inspected_kinds),
            timezone=self.sla.timezone,
            site_timezones={site: c.timezone for site, c in self.sites.items()},
        )

    def compensation_policy(self) -> CompensationPolicy | None:
        """The service credits SLA breaches earn; None when every amount is 0."""
        from service.compensation import CompensationPolicy
        from service.model import Tier
        from service.sla import Clock

        c = self.compensation
        credits = {
            Tier.URGENT: {
                Clock.RESPOND: c.urgent_respond_credit,
                Clock.RESOLVE: c.urgent_resolve_credit,
            },
            Tier.GENERAL: {
                Clock.RESPOND: c.general_respond_credit,
                Clock.RESOLVE: c.general_resolve_credit,
            },
        }
        if not any(amount for by_clock in credits.values() for amount in by_clock.values()):
            return None
        return CompensationPolicy(
            currency=c.currency, credits=credits, contract_only=c.contract_only
        )

    def service_worker_settings(self, devices: DeviceDirectory | None = None) -> WorkerSettings:
        """The ticket worker's settings (broker = [uplink_broker], where the alerts go).

        Pass the service store as ``devices`` so SLA clocks count in each device's site calendar.
        """
        from service.worker import WorkerSettings

        s = self.service
        return WorkerSettings(
            host=self.uplink_broker.host,
            port=self.uplink_broker.port,
            client_id=s.client_id,
            mqtt_v5=s.mqtt_v5,
            tls=self.check_tls("uplink_broker"),
            tick_s=s.tick_interval_s,
            sla=self.sla_config(devices),
            schedules=self.schedule_config(),
            notify=self.notify_config(),
            compensation=self.compensation_policy(),
        )

    def retention_policy(self) -> RetentionPolicy:
        """How long each kind of record is kept, and how often the prune runs."""
        from infra.retention import RetentionPolicy

        r = self.retention
        return RetentionPolicy(
            readings_days=r.readings_days,
            dead_letters_days=r.dead_letters_days,
            batch_claims_days=r.batch_claims_days or r.readings_days,
            notifications_days=r.notifications_days,
            baselines_days=r.baselines_days,
            interval_s=r.interval_s,
        )


def _key(setting: str, path: Path | None) -> bytes | None:
    """The key in ``path`` (None if unset); KeyFileError naming ``setting`` if unusable."""
    if path is None:
        return None
    try:
        return read_key(path)
    except KeyFileError as exc:
        raise KeyFileError(f"{setting}: {exc}") from None


def env_name(*path: str) -> str:
    """The environment variable of a setting, e.g. ``env_name("rules", "packs")``."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def _default(value: Any) -> str:
    """A default as it would be written in the TOML file; unset ones as a dash."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value in ("", []):
        return "—"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, time):
        return f'"{value.strftime("%H:%M")}"'
    if isinstance(value, str | Path):
        return f'"{value}"'
    return str(value)


def _section_of(annotation: Any) -> tuple[type[BaseModel], bool]:
    """The model of a VigilSettings field and whether it is a table of them (by name/id)."""
    args = typing.get_args(annotation)
    is_table = typing.get_origin(annotation) is dict
    model = args[1] if is_table else annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model, is_table


def _section_table(name: str, field: FieldInfo) -> list[str]:
    model, is_table = _section_of(field.annotation)
    title = field.description or (model.__doc__ or "").strip()
    heading, _, title = title.partition(": ") if title.startswith("[") else (f"[{name}]", "", title)
    key_env = f"{name}__<{heading.split('<')[1].split('>')[0]}>" if is_table else name
    lines = ["", f"## {heading}", "", title[:1].upper() + title[1:].rstrip(".") + "."]
    if is_table:
        lines += [
            "",
            f"In the environment: `{env_name(key_env, 'KEY')}`, or all of them as JSON in "
            f"`{env_name(name)}` (needed for names other than letters, digits and `_`).",
        ]
    lines += ["", "| key | environment variable | default | meaning |", "|---|---|---|---|"]
    for key, sub in model.model_fields.items():
        lines.append(
            f"| `{key}` | `{env_name(key_env, key)}` | {_default(sub.default)} | "
            f"{sub.description or ''} |"
        )
    return lines


_EXAMPLE = """\
```toml
[uplink_broker]
host = "broker.example"

[rules]
packs = ["dressings"]
tick_interval_s = 30

# General tickets count business hours: 08:00–18:00 Shanghai time at this hospital.
[sla]
general_business_hours = true

[calendars.cn-hospital]
opens = "08:00"
closes = "18:00"
holidays = ["2026-10-01", "2026-10-02"]

[sites.sh-ruijin]
timezone = "Asia/Shanghai"
calendar = "cn-hospital"
holidays = ["2026-06-19"]
```"""


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
        _EXAMPLE,
    ]
    for name, field in VigilSettings.model_fields.items():
        lines += _section_table(name, field)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(configuration_reference(), end="")
