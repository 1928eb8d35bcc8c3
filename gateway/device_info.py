"""Device Information upstream: what each BLE patch says it is, retained per device.

The BLE acquisition reads Device Information once per patch (and again after a change); this
publisher sends each new or changed one over the uplink's connection, retained on
``vigil/v1/gateways/<gw>/devices/<device>/info`` (contract.presence.DeviceInfoReport), where the
service reconciles it with the installed base. A report is forgotten only once published.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

import aiomqtt

from contract.ble.gatt import DeviceInformation
from contract.presence import DeviceInfoReport, device_info_topic
from infra.time_us import now_us

log = logging.getLogger(__name__)


@runtime_checkable
class DeviceInfoSource(Protocol):
    """A source that reads Device Information (the BLE acquisition)."""

    def device_info_due(self) -> list[tuple[str, DeviceInformation]]:
        """(device id, information) not yet published."""
        ...

    def device_info_published(self, device_id: str, info: DeviceInformation) -> None:
        """The broker took the report."""
        ...


class DeviceInfoPublisher:
    """``uplink.publishers.append(DeviceInfoPublisher(gw, source).publish)``."""

    def __init__(self, gateway_id: str, source: DeviceInfoSource, every_s: float = 1.0) -> None:
        self.gateway_id = gateway_id
        self.source = source
        self.every_s = every_s
        self.published = 0

    async def publish(self, client: aiomqtt.Client) -> None:
        """Publish what is due every ``every_s`` until cancelled."""
        while True:
            for device_id, info in self.source.device_info_due():
                report = _report(self.gateway_id, device_id, info)
                if report is None:
                    self.source.device_info_published(device_id, info)
                    continue
                topic = device_info_topic(self.gateway_id, device_id)
                await client.publish(topic, report.encode(), qos=1, retain=True)
                self.source.device_info_published(device_id, info)
                self.published += 1
            await asyncio.sleep(self.every_s)


def _report(gateway_id: str, device_id: str, info: DeviceInformation) -> DeviceInfoReport | None:
    """The report, or None (logged) when the patch's values break the contract's bounds."""
    try:
        return DeviceInfoReport(
            gateway_id=gateway_id,
            device_id=device_id,
            at_us=now_us(),
            model_number=info.model_number,
            serial_number=info.serial_number,
            firmware_revision=info.firmware_revision,
            hardware_revision=info.hardware_revision,
        )
    except ValueError as exc:
        log.warning("device information of %s not reportable: %s", device_id, exc)
        return None
