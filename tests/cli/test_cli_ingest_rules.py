"""`vigil ingest run` as a real process on a real Mosquitto: rules in process, alerts published."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest

from contract import AlertTransition, Batch, Reading, decode_alert, encode_batch
from contract.topics import alert_topic, batch_topic
from infra.telemetry.sqlite import SQLiteStore
from infra.time_us import now_us
from tests.rules.harness import MIN
from tests.servers import PrivateMosquitto

VIGIL = Path(sys.executable).parent / "vigil"
RULE = (
    "rules:\n  - {id: wet, kind: threshold, severity: warning, source: s, "
    "scope: {metric: exudate}, raise: {above: 85}, clear: {below: 20}}\n"
)


@pytest.mark.services
async def test_ingest_runs_the_rules_from_settings_and_publishes_alerts(
    mosquitto: PrivateMosquitto, tmp_path: Path
) -> None:
    rule_file = tmp_path / "wet.yaml"
    rule_file.write_text(RULE)
    db, snapshot = tmp_path / "vigil.db", tmp_path / "rules.snap"
    env = os.environ | {
        "PYTHONFAULTHANDLER": "1",
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_UPLINK_BROKER__PORT": str(mosquitto.port),
        "VIGIL_INGEST__STORAGE_URL": f"sqlite:///{db}",
        "VIGIL_INGEST__CLIENT_ID": "cli-test-ingest",
        "VIGIL_RULES__PACKS": "[]",
        "VIGIL_RULES__RULE_FILES": f'["{rule_file}"]',
        "VIGIL_RULES__SNAPSHOT_PATH": str(snapshot),
    }
    proc = await asyncio.create_subprocess_exec(str(VIGIL), "ingest", "run", env=env, cwd=tmp_path)
    # Stamped minutes ago: the ingest process applies the wall-clock timestamp window.
    start = now_us() - 10 * MIN
    batch = Batch(
        "gw-cli",
        0,
        tuple(Reading("p1", "exudate", 90.0, "%", start + m * MIN, m) for m in range(3)),
    )
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="cli-test") as client:
            await client.subscribe(alert_topic("p1"), qos=1)

            async def first_alert() -> bytes:
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return message.payload
                raise AssertionError("no alert")

            waiting = asyncio.create_task(first_alert())
            # Until ingest has subscribed the batch is dropped; a resent batch is a duplicate
            # to ingest and to the engine, so resending until the alert comes is harmless.
            for _ in range(60):
                await client.publish(batch_topic("gw-cli"), encode_batch(batch), qos=1)
                done, _pending = await asyncio.wait({waiting}, timeout=0.5)
                if done:
                    break
            alert = decode_alert(await asyncio.wait_for(waiting, 1))
        assert (alert.rule_id, alert.transition) == ("wet", AlertTransition.RAISED)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            # Abort rather than kill: with PYTHONFAULTHANDLER it prints where it hung.
            proc.send_signal(signal.SIGABRT)
            await proc.wait()
            raise
    # SIGTERM unwinds the runtime, which writes its last snapshot on the way out.
    assert code == 0 and snapshot.exists()
    with SQLiteStore(str(db)) as store:
        assert store.reading_count() == 3
        assert [e.rule_id for e in store.fetch_alert_events("p1")] == ["wet"]
