"""Device Information end to end: virtual patches' DIS → gateway publisher → Mosquitto → service.

One patch's serial contradicts the installed base: audited and a ``device.info_mismatch``
alert. The other matches but runs newer firmware: the device record is updated (audited).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt
import pytest

from contract import AlertEvent, DeviceKind
from gateway.device_info import DeviceInfoPublisher
from service.presence import INFO_MISMATCH_RULE
from tests.alert_listener import alert_listener
from tests.bleak.test_bleak_harness import running
from tests.e2e_remote.harness import GATEWAY, remote_site
from tests.servers import PrivateMosquitto
from tests.service.factories import device
from tests.waiting import wait_until_async

pytestmark = pytest.mark.services


async def test_device_information_is_reconciled_and_a_mismatch_raised(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    alerts: list[AlertEvent] = []
    async with (
        remote_site(mosquitto.port, tmp_path, gateway=False) as here,
        alert_listener(mosquitto.port, alerts),
        running(2, connectable=2) as h,
    ):
        wrong, right = h.patches
        here.store.put_device(
            device(wrong.device_id, DeviceKind.PATCH, model="VGL-PATCH-1").model_copy(
                update={"serial": "SN-somebody-else"}
            )
        )
        here.store.put_device(
            device(right.device_id, DeviceKind.PATCH, model="VGL-PATCH-1").model_copy(
                update={"serial": f"SN-{right.device_id}", "firmware": "1.3.0"}
            )
        )
        await h.play(5.0)
        publisher = DeviceInfoPublisher(GATEWAY, h.acquisition, every_s=0.1)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="gw-uplink") as up:
            task = asyncio.create_task(publisher.publish(up))
            try:
                await wait_until_async(lambda: publisher.published >= 2, 20, "reports sent")
                await wait_until_async(
                    lambda: any(a.rule_id == INFO_MISMATCH_RULE for a in alerts), 20, "mismatch"
                )
                await wait_until_async(
                    lambda: here.store.device(right.device_id).firmware == "1.4.2",  # type: ignore[union-attr]
                    20,
                    "firmware reconciled",
                )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        [alert] = [a for a in alerts if a.rule_id == INFO_MISMATCH_RULE]
        assert alert.device_id == wrong.device_id and "serial" in alert.evidence
        audit = [(e.action, e.subject) for e in here.store.audit_log()]
        assert ("device_info_mismatch", wrong.device_id) in audit
        assert ("device_replaced", right.device_id) in audit
        assert here.store.device(wrong.device_id).firmware == ""  # type: ignore[union-attr]
