"""docs/integration.md is true: its mosquitto_pub lines, run as written, do what it says.

The lines are read from the document and run by bash (``$(date +%s%6N)`` and all) against a
private Mosquitto, consumed the way a gateway consumes equipment: the equipment bridge into the
outbox, the uplink to a real ingest worker, into SQLite. The good reading must be stored; the
refused ones must be dead-lettered with the very reasons the document quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.app import Gateway, GatewaySettings
from gateway.equipment_bridge import SiteBrokerSettings
from gateway.uplink import UplinkSettings
from infra.telemetry import ReadingStore, open_store
from ingest.worker import IngestSettings, IngestWorker
from simulator.fleet import FleetSpec
from tests.servers import PrivateMosquitto
from tests.waiting import wait_until_async
from vigil.cli import app
from vigil.demo import run_demo

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
TEXT = DOC.read_text(encoding="utf-8")
DEMO_PORT = inspect.signature(run_demo).parameters["port"].default


def commands() -> list[str]:
    """Every mosquitto_pub command of the document's sh blocks, continuations joined."""
    blocks = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.DOTALL)
    joined = [block.replace("\\\n", " ") for block in blocks]
    return [line.strip() for b in joined for line in b.splitlines() if "mosquitto_pub" in line]


def quoted(marker: str) -> str:
    """The block the document quotes under ``<!-- marker -->``."""
    match = re.search(rf"<!-- {marker} -->\n```\n(.*?)\n```", TEXT, flags=re.DOTALL)
    assert match, f"no quoted block {marker!r}"
    return match.group(1)


def reason(name: str) -> str:
    """The reason the document quotes under ``<!-- reason:name -->``."""
    return quoted(f"reason:{name}")


def _without_time(text: str) -> str:
    return re.sub(r"received  \S+", "received  <time>", text)


def the_command(marker: str) -> str:
    chosen = [c for c in commands() if marker in c]
    assert len(chosen) == 1, commands()
    return chosen[0]


GOOD = the_command("$(date +%s%6N)")
IN_SECONDS = the_command('"ts_us":1795925660,')


def test_the_document_names_the_demos_broker_and_site() -> None:
    assert DEMO_PORT == 18830
    assert f"127.0.0.1:{DEMO_PORT}" in TEXT
    for command in commands():
        assert f"-h 127.0.0.1 -p {DEMO_PORT} " in command
        assert f"site/{FleetSpec().site}/equipment/us-900/telemetry" in command


@contextlib.asynccontextmanager
async def a_site(tmp_path: Path, port: int) -> AsyncIterator[tuple[Gateway, ReadingStore]]:
    """A gateway bridging site-a of ``port`` with its default timestamp window, and ingest."""
    store = open_store(f"sqlite:///{tmp_path / 'readings.db'}")
    store.migrate()
    ingest = IngestWorker(IngestSettings(port=port, client_id="doc-ingest"), store)
    ingesting = asyncio.create_task(ingest.run())
    settings = GatewaySettings(
        gateway_id="gw-doc",
        outbox_path=tmp_path / "outbox.db",
        uplink=UplinkSettings(port=port),
        site_broker=SiteBrokerSettings(port=port, site=FleetSpec().site),
    )
    try:
        await asyncio.wait_for(ingest.subscribed.wait(), 30)
        async with Gateway(settings) as gateway:
            assert gateway.bridge is not None
            await asyncio.wait_for(gateway.bridge.subscribed.wait(), 30)
            yield gateway, store
    finally:
        ingesting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingesting
        store.close()


async def run(command: str, port: int) -> None:
    """Run a line of the document with bash, the demo's port swapped for the test broker's."""
    line = command.replace(f"-p {DEMO_PORT} ", f"-p {port} ")
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", line, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()


async def test_the_documented_reading_is_stored_and_the_refused_ones_dead_lettered(
    tmp_path: Path, mosquitto: PrivateMosquitto
) -> None:
    async with a_site(tmp_path, mosquitto.port) as (gateway, store):
        before_us = time.time_ns() // 1000
        await run(GOOD, mosquitto.port)
        await wait_until_async(lambda: store.reading_count() >= 3, 30, "the reading stored")
        stored = {r.metric: r for r in store.fetch_readings(device_id="us-900")}
        assert {m: r.value for m, r in stored.items()} == {
            "mains_voltage": 230.6,
            "ng_voltage": 0.4,
            "error_code": 0.0,
        }
        assert {r.unit for r in stored.values()} == {"V", "code"}
        assert {r.seq for r in stored.values()} == {1}
        ts_us = stored["mains_voltage"].ts_us  # `date +%s%6N`: µs since the epoch, now
        assert before_us - 5_000_000 <= ts_us <= time.time_ns() // 1000
        await asyncio.wait_for(gateway.drained(), 30)  # ingest confirmed it: the outbox forgot

        extra = GOOD.replace('"seq":1,', '"seq":3,"firmware":"1.2",')
        for command in (IN_SECONDS, extra):
            await run(command, mosquitto.port)
        letters = gateway.outbox.dead_letter_page
        await wait_until_async(lambda: len(letters(10)) >= 2, 30, "two dead letters")
        refused = {letter.reason: letter for letter in letters(10)}
        assert set(refused) == {reason("seconds"), reason("extra")}
        assert {letter.source for letter in refused.values()} == {
            "site/site-a/equipment/us-900/telemetry"
        }
        assert b'"ts_us":1795925660,' in refused[reason("seconds")].payload
        assert store.reading_count() == 3

    shown = CliRunner().invoke(
        app,
        ["deadletters", "show", "1", "--outbox", str(tmp_path / "outbox.db")],
        env={"COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    assert _without_time(shown.output.strip("\n")) == _without_time(quoted("deadletter:show"))


@pytest.mark.parametrize(
    "change, quoted",
    [
        ('"mains_voltage":301.0', "mains_voltage: value 301.0 outside the valid range"),
    ],
)
def test_the_quoted_reading_reason_is_the_codes(change: str, quoted: str) -> None:
    from contract import equipment_readings

    payload = (
        b'{"device_id":"us-900","kind":"ultrasound","seq":4,"ts_us":1795925660514596,'
        b'"metrics":{' + change.encode() + b"}}"
    )
    decoded = equipment_readings(payload)
    assert [r.reason for r in decoded.rejected] == [
        "mains_voltage: value 301.0 outside the valid range [0.0, 300.0]"
    ]
    assert f"`reading 0: {decoded.rejected[0].reason}`" in TEXT.replace("\n", " ")
    assert quoted in TEXT


def test_the_metric_table_is_the_catalogs() -> None:
    from contract.catalog import EQUIPMENT_METRICS, METRICS

    rows = re.findall(r"^\| `(\w+)` \| (\S+) \| ([^|]+) \| ([^|]+) \|$", TEXT, flags=re.MULTILINE)
    assert {name for name, *_ in rows} == EQUIPMENT_METRICS
    for name, unit, valid, meaning in rows:
        spec = METRICS[name]
        bounds = valid.strip().removesuffix(", whole").replace(",", "")
        low, high = (float(x) for x in bounds.split("–"))
        assert (unit, low, high) == (spec.unit, spec.low, spec.high), name
        assert ("whole" in valid) == spec.integral, name
        assert meaning.strip() == spec.description, name
