"""Drives a fleet through simulated time: patches into a gateway sink, equipment over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt

from contract import Reading
from contract.topics import equipment_topic
from infra.mqtt_tls import MqttTls, tls_context
from infra.tasks import stop_all
from simulator.agent import EquipmentAgent
from simulator.fleet import Fleet

ReadingSink = Callable[[Sequence[Reading]], Awaitable[None]]
# The TLS files a device connects with, by device id (None: plain TCP).
DeviceTls = Callable[[str], MqttTls | None]


class SimulatedFleet:
    """A finite reading source: ``ticks`` samples of every device, ``tick_wall_s`` apart.

    Patch readings go straight to the sink (BLE arrives through the bleak backend instead);
    each piece of equipment publishes its own telemetry to the site broker, QoS 1, as real
    equipment does, under its own MQTT client id (and, with ``device_tls``, its own
    certificate: the site broker's ACL lets a device publish only under its own id).
    """

    name = "simulator"

    def __init__(
        self,
        fleet: Fleet,
        ticks: int,
        tick_wall_s: float = 0.0,
        site_broker: tuple[str, int] | None = None,
        start_after: asyncio.Event | None = None,
        device_tls: DeviceTls | None = None,
        remote: bool = False,
    ) -> None:
        self.fleet = fleet
        self.ticks = ticks
        self.tick_wall_s = tick_wall_s
        self.site_broker = site_broker
        self.start_after = start_after
        self.device_tls = device_tls
        self.ticks_done = 0
        # MQTT 5 per device: presence with a last will, and answers to remote commands.
        self.remote = remote
        self.agents: dict[str, EquipmentAgent] = {}

    async def run(self, sink: ReadingSink) -> None:
        """Emit every tick, then return."""
        if self.start_after is not None:
            await self.start_after.wait()
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, aiomqtt.Client] = {}
            if self.site_broker is not None and self.fleet.equipment and self.remote:
                clients = await self._agents(stack, *self.site_broker)
            elif self.site_broker is not None and self.fleet.equipment:
                host, port = self.site_broker
                for device in self.fleet.equipment:
                    tls = self.device_tls(device.device_id) if self.device_tls else None
                    client = aiomqtt.Client(
                        host,
                        port,
                        identifier=f"equipment-{device.device_id}",
                        tls_context=tls_context(tls),
                    )
                    clients[device.device_id] = await stack.enter_async_context(client)
            site = self.fleet.spec.site
            for tick in range(self.ticks):
                patch_readings = self.fleet.patch_readings(tick)
                if patch_readings:
                    await sink(patch_readings)
                if clients:
                    messages = self.fleet.equipment_messages(tick)
                    await asyncio.gather(
                        *(
                            clients[m.device_id].publish(
                                equipment_topic(site, m.device_id), m.encode(), qos=1
                            )
                            for m in messages
                        )
                    )
                self.ticks_done = tick + 1
                await asyncio.sleep(self.tick_wall_s)

    async def _agents(
        self, stack: contextlib.AsyncExitStack, host: str, port: int
    ) -> dict[str, aiomqtt.Client]:
        """Connect every device's agent and have it answer commands while the run lasts."""
        site = self.fleet.spec.site
        for device in self.fleet.equipment:
            tls = self.device_tls(device.device_id) if self.device_tls else None
            agent = EquipmentAgent(device, site, host, port, tls=tls, sim_time=self.sim_time)
            self.agents[device.device_id] = await stack.enter_async_context(agent)
        serving = [asyncio.create_task(a.serve()) for a in self.agents.values()]
        # Unwound first: every agent stops answering before it says goodbye and disconnects.
        stack.push_async_callback(stop_all, serving)
        return {device_id: agent.client for device_id, agent in self.agents.items()}

    def sim_time(self) -> float:
        """The simulated time reached, in seconds."""
        return self.ticks_done * self.fleet.spec.tick_s
