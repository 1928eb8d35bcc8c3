"""The broker-fed rules worker binds identity to data as ingest does: it evaluates only readings
a batch's gateway may report, from that gateway's own topic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiomqtt
import pytest

from contract import Batch, Reading, encode_batch
from contract.topics import batch_topic
from infra.errors import Poison
from infra.time_us import now_us
from rules.worker import RulesWorker, RulesWorkerSettings

REGISTRY = "gateways: {gw-a: site-a}\ndevices: {p1: {site: site-a}, p9: {site: site-b}}\n"


class _Runtime:
    """Records what the worker hands the rule runtime."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.publisher: object = None

    async def on_stored(self, batches: Sequence[Batch]) -> None:
        self.batches.extend(batches)


def _message(batch: Batch, topic: str) -> aiomqtt.Message:
    return aiomqtt.Message(topic, encode_batch(batch), 1, False, 1, None)


def _batch(gateway: str, *devices: str) -> Batch:
    t = now_us() - 60_000_000
    return Batch(
        gateway, 1, tuple(Reading(d, "exudate", 50.0, "%", t + i, i) for i, d in enumerate(devices))
    )


async def test_readings_of_other_sites_devices_never_reach_the_rules(tmp_path: Path) -> None:
    registry = tmp_path / "installed.yaml"
    registry.write_text(REGISTRY)
    runtime = _Runtime()
    worker = RulesWorker(RulesWorkerSettings(installed_base_file=registry), runtime)  # type: ignore[arg-type]
    batch = _batch("gw-a", "p1", "p9", "p-unknown")
    await worker.handle(None, [_message(batch, batch_topic("gw-a"))])  # type: ignore[arg-type]
    assert [r.device_id for b in runtime.batches for r in b.readings] == ["p1"]
    assert worker.unregistered == 2


async def test_a_batch_on_another_gateways_topic_is_skipped() -> None:
    worker = RulesWorker(RulesWorkerSettings(), _Runtime())  # type: ignore[arg-type]
    with pytest.raises(Poison, match="gw-b"):
        await worker.handle(None, [_message(_batch("gw-b", "p1"), batch_topic("gw-a"))])  # type: ignore[arg-type]
