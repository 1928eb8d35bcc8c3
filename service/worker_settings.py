"""The service worker's settings: broker, intervals, retry back-off and the desk's policies."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.mqtt_tls import MqttTls
from service.compensation import CompensationPolicy
from service.notifications import NotifyConfig
from service.schedules import ScheduleConfig
from service.sla import SlaConfig


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Broker connection, periodic-job interval and the policies the desk applies."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "vigil-service-1"
    mqtt_v5: bool = True  # False for MQTT 3.1.1 brokers such as the embedded amqtt
    tls: MqttTls | None = None  # None: plain TCP (the embedded demo broker)
    session_expiry_s: int = 24 * 3600
    reconnect_backoff_s: float = 0.5
    tick_s: float = 60.0
    # Alerts that queued up while a commit was in flight go into the next one together (group
    # commit: one WAL flush for all), at most this many; each is acknowledged after it commits.
    alert_group_max: int = 64
    outbox_poll_s: float = 1.0  # how often the sender looks for due notifications unprompted
    # An alert held through a storage outage is retried after this, doubling up to the max.
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 10.0
    sla: SlaConfig = field(default_factory=SlaConfig)
    schedules: ScheduleConfig = field(default_factory=ScheduleConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    compensation: CompensationPolicy | None = None  # None: breaches earn no service credit

    def __post_init__(self) -> None:
        if self.alert_group_max < 1:
            raise ValueError(f"alert_group_max must be at least 1, not {self.alert_group_max}")
