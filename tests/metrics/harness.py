"""Run `vigil …` processes with a metrics port, scrape them over HTTP, read their JSON logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port
from tests.waiting import wait_until

VIGIL = str(Path(sys.executable).parent / "vigil")


@dataclass
class Scrape:
    """One scrape of /metrics: every sample by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    families: set[str]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly ``labels``; 0 if absent."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets ``name`` has samples for."""
        return [dict(ls) for (n, ls) in self.samples if n == name]


def scrape(port: int) -> Scrape:
    """GET http://127.0.0.1:port/metrics and parse it as Prometheus does."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
    response.raise_for_status()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, families)


def scrapes(port: int) -> bool:
    """Whether the endpoint answers yet."""
    try:
        scrape(port)
    except httpx.HTTPError:
        return False
    return True


@dataclass
class Running:
    """A `vigil` process started by ``running``: its metrics port and its log file."""

    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def scrape(self) -> Scrape:
        """Scrape the process's metrics endpoint."""
        return scrape(self.metrics_port)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (lines that are not JSON are skipped)."""
        records = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def plain_lines(self) -> list[str]:
        """Output lines that are not JSON records (with --log-format json: none expected)."""
        plain = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                plain.append(line)
        return [line for line in plain if line.strip()]

    def wait_scraped(self, timeout: float = 60.0) -> None:
        """Wait until the endpoint answers, failing early if the process died."""

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"process exited {self.process.returncode}: {self.tail()}")
            return scrapes(self.metrics_port)

        wait_until(up, timeout, f"metrics on :{self.metrics_port}")

    def tail(self) -> str:
        """The end of the process's log, for failure messages."""
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@contextmanager
def running(args: list[str], env: Mapping[str, str], cwd: Path, name: str) -> Iterator[Running]:
    """Run ``vigil --log-format json ARGS --metrics-port P`` until the block ends (SIGINT)."""
    port = free_port()
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [VIGIL, "--log-format", "json", *args, "--metrics-port", str(port)],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = Running(process, port, log)
    try:
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
