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
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
    match = re.search(rf"<!-- {marker} -->\n```\w*\n(.*?)\n```", TEXT, flags=re.DOTALL)
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


def setup_lines() -> tuple[dict[str, str], list[str]]:
    """The try-it block: its exported settings, and its `vigil` commands (not the broker's)."""
    block = quoted("try:setup")
    (export,) = [line for line in block.splitlines() if line.startswith("export ")]
    settings = dict(item.split("=", 1) for item in export.split()[1:])
    vigil = [
        line.removesuffix("&").strip() for line in block.splitlines() if line.startswith("vigil")
    ]
    return settings, vigil


class Process:
    """A documented command running in the background, its output collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output += line.decode(errors="replace")

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader


@contextlib.asynccontextmanager
async def the_documented_site(cwd: Path, port: int) -> AsyncIterator[list[Process]]:
    """The try-it block's `vigil` commands, on the test's broker, in ``cwd``."""
    exported, commands = setup_lines()
    env = {**os.environ, "VIGIL_CONFIG": str(cwd / "absent.toml")}
    env |= {k: v.replace(str(DEMO_PORT), str(port)) for k, v in exported.items()}
    vigil = str(Path(sys.executable).parent / "vigil")
    running: list[Process] = []
    try:
        for command in commands:
            argv = [vigil, *shlex.split(command)[1:]]
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=subprocess.STDOUT
            )
            running.append(Process(process))
        yield running
    finally:
        for process in running:
            await process.stop()


async def run(command: str, port: int) -> None:
    """Run a line of the document with bash, the demo's port swapped for the test broker's."""
    line = command.replace(f"-p {DEMO_PORT} ", f"-p {port} ")
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", line, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()


def stored(database: Path) -> list[tuple[str, float, str, int]]:
    """What the document's SQL query shows."""
    (query,) = re.findall(r'sqlite3 \S+ "(SELECT .*?)"', TEXT)
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [tuple(row) for row in db.execute(query)]  # type: ignore[misc]


def letters(outbox: Path) -> str:
    shown = CliRunner().invoke(
        app, ["deadletters", "list", "--outbox", str(outbox)], env={"COLUMNS": "300"}
    )
    return shown.output


async def test_the_documented_reading_is_stored_and_the_refused_ones_dead_lettered(
    tmp_path: Path, mosquitto: PrivateMosquitto
) -> None:
    port = mosquitto.port
    (tmp_path / "var").mkdir()
    async with the_documented_site(tmp_path, port) as (ingest, gateway):
        subscribed = f"subscribed to site/{FleetSpec().site}/equipment/+/telemetry"
        await wait_until_async(lambda: subscribed in gateway.output, 60, gateway.output[-2000:])
        await wait_until_async(lambda: "subscribed to" in ingest.output, 60, ingest.output[-2000:])
        before_us = time.time_ns() // 1000
        await run(GOOD, port)
        database = tmp_path / "var" / "vigil.db"
        await wait_until_async(lambda: len(stored(database)) >= 3, 30, "the readings stored")
        assert sorted(stored(database)) == [
            ("error_code", 0.0, "code", 1),
            ("mains_voltage", 230.6, "V", 1),
            ("ng_voltage", 0.4, "V", 1),
        ]
        with contextlib.closing(sqlite3.connect(database)) as db:
            (ts_us,) = db.execute("SELECT DISTINCT ts_us FROM readings").fetchone()
        assert before_us - 5_000_000 <= ts_us <= time.time_ns() // 1000  # µs since the epoch

        extra = GOOD.replace('"seq":1,', '"seq":3,"firmware":"1.2",')
        for command in (IN_SECONDS, extra):
            await run(command, port)
        outbox = tmp_path / "var" / "outbox.db"
        await wait_until_async(
            lambda: reason("extra") in letters(outbox), 30, "both refused messages dead-lettered"
        )
        listed = letters(outbox)
        assert reason("seconds")[:60] in listed
        shown = CliRunner().invoke(
            app, ["deadletters", "show", "1", "--outbox", str(outbox)], env={"COLUMNS": "200"}
        )
        assert shown.exit_code == 0, shown.output
        assert _without_time(shown.output.strip("\n")) == _without_time(quoted("deadletter:show"))
        assert len(stored(database)) == 3


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
