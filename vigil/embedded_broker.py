"""An in-process MQTT broker (amqtt) so the embedded default needs no server installed."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker


class EmbeddedBroker:
    """``async with EmbeddedBroker(port) as broker:`` serves MQTT 3.1.1 on loopback."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = Broker(config)

    async def __aenter__(self) -> Self:
        # amqtt logs every connection at INFO and its own protocol bookkeeping at WARNING
        # ("PUBACK waiter … already done"); keep the demo's output to our summary.
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        await self._broker.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._broker.shutdown()
