"""docs/integration.md's promise about `vigil demo --serve`: its mosquitto_pub line reaches the
served demo, whose broker, gateway, ingest, rules and ticket worker keep running beside the
console, and the readings are stored in the demo's database. Ctrl-C ends it cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.integration_doc.test_integration_doc import GOOD, run, stored
from tests.servers import free_port
from tests.waiting import wait_until_async


async def test_the_documented_line_reaches_vigil_demo_serve(tmp_path: Path) -> None:
    broker_port, http_port = free_port(), free_port()
    workdir = tmp_path / "demo"
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from vigil.cli import app; app()",
        "demo",
        "--serve",
        *("--patches", "3", "--equipment", "1", "--ticks", "30"),
        *("--port", str(broker_port), "--http-port", str(http_port)),
        *("--workdir", str(workdir)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    output = bytearray()

    async def collect() -> None:
        assert demo.stdout is not None
        while chunk := await demo.stdout.read(4096):
            output.extend(chunk)

    reading = asyncio.create_task(collect())
    try:
        await wait_until_async(lambda: b"Demo logins" in output, 180, "the demo serving")
        assert f"MQTT on 127.0.0.1:{broker_port}".encode() in output
        await run(GOOD, broker_port)
        database = workdir / "vigil.db"
        await wait_until_async(
            lambda: len(stored(database)) >= 3, 30, "the documented readings stored"
        )
        assert sorted(stored(database)) == [
            ("error_code", 0.0, "code", 1),
            ("mains_voltage", 230.6, "V", 1),
            ("ng_voltage", 0.4, "V", 1),
        ]
        demo.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.wait(), 30) == 0, output.decode()[-3000:]
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
        await reading
