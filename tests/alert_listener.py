"""A test subscriber that collects every alert event published on a broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiomqtt

from contract import AlertEvent, decode_alert
from contract.topics import ALERTS_PREFIX


@contextlib.asynccontextmanager
async def alert_listener(
    port: int, into: list[AlertEvent], client_id: str = "test-alert-listener"
) -> AsyncIterator[None]:
    """Append every alert event published on the broker at ``port`` to ``into`` while inside."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id) as client:
        await client.subscribe(f"{ALERTS_PREFIX}/#", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                into.append(decode_alert(message.payload))

        task = asyncio.create_task(listen())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
