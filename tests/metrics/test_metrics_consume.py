"""The consume loop's metrics and logs, on real Mosquitto, scraped from a real endpoint.

One loop, one registry served on a free port: a message that commits, one that is poison, and
one held through a storage outage. Each outcome is counted once, and the outage and the dead
letter are each logged once with their context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry

from infra.consume import ConsumeLoop, ConsumerSettings, payload_bytes
from infra.errors import Poison, StorageUnavailable
from infra.metrics import serve
from tests.metrics.harness import scrape
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async

TOPIC = "vigil/test/metrics"


class Handler:
    """Commits ``ok``, refuses ``poison``, and fails ``held`` on storage twice before it commits."""

    def __init__(self) -> None:
        self.outage_left = 2
        self.done: list[bytes] = []

    async def __call__(self, client: aiomqtt.Client, messages: Sequence[aiomqtt.Message]) -> None:
        for message in messages:
            payload = payload_bytes(message)
            if payload == b"poison":
                raise Poison("not a thing we can use")
            if payload == b"held" and self.outage_left:
                self.outage_left -= 1
                raise StorageUnavailable("database restarting")
        self.done += [payload_bytes(m) for m in messages]


async def _dead_letter(message: aiomqtt.Message, reason: str) -> None:
    """Dead letters are kept by the caller's sink; here, nowhere."""


@pytest.mark.services
async def test_consume_loop_counts_commits_dead_letters_and_outages(
    mosquitto: PrivateMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    registry = CollectorRegistry()
    settings = ConsumerSettings(
        "127.0.0.1",
        mosquitto.port,
        "metrics-consumer",
        TOPIC,
        retry_backoff_s=0.05,
        retry_backoff_max_s=0.1,
    )
    handler = Handler()
    loop = ConsumeLoop(settings, handler, _dead_letter, name="probe")
    loop.instrument(registry)
    server = serve(registry, 0, "127.0.0.1")
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(loop.subscribed.wait(), 30)
        assert scrape(server.port).value("vigil_consume_connected", consumer="probe") == 1
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="metrics-pub") as pub:
            for payload in (b"ok", b"poison", b"held"):
                await pub.publish(TOPIC, payload, qos=1)
        await wait_until_async(lambda: b"held" in handler.done, 30.0, "the held message commits")
        s = scrape(server.port)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()

    assert s.value("vigil_consume_messages_total", consumer="probe", outcome="committed") == 2
    assert s.value("vigil_consume_messages_total", consumer="probe", outcome="dead_lettered") == 1
    assert s.value("vigil_consume_dead_letters_total", consumer="probe", reason="Poison") == 1
    assert s.value("vigil_consume_outages_total", consumer="probe") == 1
    assert s.value("vigil_consume_retries_total", consumer="probe") == 2
    assert s.value("vigil_consume_holding", consumer="probe") == 0
    assert s.value("vigil_consume_handle_seconds_count", consumer="probe") == 2

    dead = [r for r in caplog.records if getattr(r, "consumer", None) == "probe"]
    assert len(dead) == 1 and dead[0].levelno == logging.WARNING
    assert dead[0].__dict__["reason"] == "not a thing we can use"
    assert dead[0].__dict__["topic"] == TOPIC and dead[0].__dict__["error"] == "Poison"
    outage = [r for r in caplog.records if getattr(r, "outage", None) == "probe: infrastructure"]
    assert [r.levelno for r in outage] == [logging.WARNING, logging.WARNING]  # began, ended
    assert "StorageUnavailable: database restarting" in outage[0].getMessage()
    assert "available again" in outage[1].getMessage()
    start = [r for r in caplog.records if r.name == "vigil.start"]
    assert len(start) == 1 and start[0].__dict__["client_id"] == "metrics-consumer"
