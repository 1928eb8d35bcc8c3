"""The poison corpus through the real processes: nothing travels, nothing dies, nothing vanishes.

Each case is published (equipment telemetry on the site broker, or a batch straight on the
uplink), then a valid canary message; once the canary is stored, the case must have ended as a
stored reading or a dead letter with its reason, and neither process may have exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from contract.topics import batch_topic, equipment_topic
from infra.time_us import now_us
from tests.poison.corpus import Case, equipment_cases, uplink_cases
from tests.poison.pipeline import SITE, Pipeline, database, running_pipeline
from tests.servers import PrivatePostgres

pytestmark = pytest.mark.services
CANARY = "canary-1"
_seqs = itertools.count(1_000)


@pytest.fixture(scope="module", params=["sqlite", "timescale"])
def pipeline(
    request: pytest.FixtureRequest, postgres_server: PrivatePostgres
) -> Iterator[Pipeline]:
    """One running pipeline per storage backend, shared by every case."""
    with tempfile.TemporaryDirectory(prefix="vigil-poison-") as tmp:
        workdir = Path(tmp)
        with (
            storage_url(request.param, postgres_server, workdir) as url,
            running_pipeline(workdir, url) as running,
        ):
            asyncio.run(_warm_up(running))
            yield running


def storage_url(
    backend: str, server: PrivatePostgres, workdir: Path
) -> contextlib.AbstractContextManager[str]:
    """The storage URL of the backend, with the database's lifetime."""
    if backend == "timescale":
        return database(server)
    return contextlib.nullcontext(f"sqlite:///{workdir / 'vigil.db'}")


async def _publish(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"poisoner-{time.time_ns()}") as client:
        await client.publish(topic, payload, qos=1)


def _canary(seq: int) -> bytes:
    doc = {
        "device_id": CANARY,
        "kind": "endoscope",
        "seq": seq,
        "ts_us": now_us(),
        "metrics": {"probe_health": 97.5},
    }
    return json.dumps(doc).encode()


async def _until(pipeline: Pipeline, condition: Callable[[], bool], within_s: float) -> bool:
    """Poll ``condition`` (in a thread: it reads databases) until true or the deadline."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return True
        assert pipeline.alive(), "a process exited\n" + pipeline.log_tail()
        await asyncio.sleep(0.05)
    return False


async def _warm_up(pipeline: Pipeline) -> None:
    """Publish canaries until one is stored: the bridge and ingest have subscribed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seq = next(_seqs)
        await _publish(pipeline.site.port, equipment_topic(SITE, CANARY), _canary(seq))
        if await _until(pipeline, lambda s=seq: ("probe_health", s) in pipeline.stored(CANARY), 2):
            return
    raise TimeoutError("the pipeline never stored a canary\n" + pipeline.log_tail())


def _params(cases: list[Case]) -> list[object]:
    return [
        pytest.param(case, id=case.name, marks=[pytest.mark.xfail(reason=case.xfail, strict=False)])
        if case.xfail
        else pytest.param(case, id=case.name)
        for case in cases
    ]


@pytest.mark.parametrize("case", _params(equipment_cases() + uplink_cases()))
async def test_poison_ends_stored_or_dead_lettered_and_nothing_dies(
    pipeline: Pipeline, case: Case
) -> None:
    seen = max((x.id for x in pipeline.gateway_letters(0)), default=0)
    ingest_seen = len(await asyncio.to_thread(pipeline.ingest_letters))
    if case.uplink:
        await _publish(pipeline.uplink.port, batch_topic(case.topic_device), case.payload)
    else:
        await _publish(pipeline.site.port, equipment_topic(SITE, case.topic_device), case.payload)
    seq = next(_seqs)
    await _publish(pipeline.site.port, equipment_topic(SITE, CANARY), _canary(seq))

    def canary_stored() -> bool:
        return ("probe_health", seq) in pipeline.stored(CANARY)

    def gateway_lettered() -> bool:
        fragment = case.gateway_letter
        return fragment is None or any(fragment in x.reason for x in pipeline.gateway_letters(seen))

    def ingest_lettered() -> bool:
        fragment = case.ingest_letter
        if fragment is None:
            return True
        letters = pipeline.ingest_letters()  # newest first
        return any(fragment in x.reason for x in letters[: len(letters) - ingest_seen])

    def leaked() -> bool:
        return any(pipeline.stored(device) for device in case.never_stored)

    def settled() -> bool:
        return leaked() or (canary_stored() and gateway_lettered() and ingest_lettered())

    assert await _until(pipeline, settled, 20), f"{case.name} unsettled\n" + pipeline.log_tail()
    assert not leaked(), f"{case.name}: poison was stored: {case.never_stored}"
    for device, metric in case.stored:
        assert await _until(pipeline, lambda d=device, m=metric: m in dict(pipeline.stored(d)), 10)
    assert pipeline.alive(), pipeline.log_tail()
    assert not pipeline.tracebacks(), pipeline.log_tail()
