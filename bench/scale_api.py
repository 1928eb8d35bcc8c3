"""The API measured by ``bench_service_scale``: a uvicorn process, its clients, its memory."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.tokens import TokenRegistry
from testing_services.uvicorn_api import uvicorn_api_process

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Api:
    """A running API: its base URL, its pid and the tokens minted for it by name."""

    base: str
    pid: int
    tokens: dict[str, str]

    def client(self, name: str) -> httpx.Client:
        """A client sending the token minted as ``name`` (and accepting gzip, as httpx does)."""
        return httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Bearer {self.tokens[name]}"},
            timeout=600,
        )

    def rss_mb(self) -> tuple[float, float]:
        """(resident now, peak resident) of the server process, in MB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        now, peak = (
            int(re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
            for key in ("VmRSS", "VmHWM")
        )
        return now / 1024, peak / 1024


@contextmanager
def running_api(
    store_url: str, readings_url: str, folder: Path, principals: dict[str, dict[str, str]]
) -> Iterator[Api]:
    """``vigil.api_app:app`` in one uvicorn process over the two stores."""
    registry = TokenRegistry(folder / "tokens.json")
    tokens = {
        name: registry.mint(p["role"], p.get("subject"), note=name)[0]
        for name, p in principals.items()
    }
    env = {
        **os.environ,
        "VIGIL_CONFIG": str(folder / "absent.toml"),
        "VIGIL_SERVICE__STORE_URL": store_url,
        "VIGIL_SERVICE__READINGS_URL": readings_url,
        "VIGIL_SERVICE__TOKENS_FILE": str(folder / "tokens.json"),
        "VIGIL_SERVICE__API_RATE_LIMIT": "1000000/minute",
    }
    with uvicorn_api_process(env, start_timeout_s=300) as api:
        yield Api(api.base, api.pid, tokens)


@dataclass(frozen=True, slots=True)
class Timing:
    """Latencies of one route: sequential and with concurrent clients (seconds)."""

    sequential: list[float]
    concurrent: list[float]
    status: int
    bytes: int

    @staticmethod
    def pct(values: Sequence[float], q: int) -> float:
        """The q-th percentile (inclusive method); the value itself for one sample."""
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def time_route(api: Api, who: str, path: str, samples: int, clients: int, rounds: int) -> Timing:
    """``samples`` sequential requests, then ``clients`` clients making ``rounds`` each at once."""
    with api.client(who) as http:
        first = http.get(path)  # warm (and checked)
        status, size = first.status_code, len(first.content)
        sequential = [_timed(http, path) for _ in range(samples)]

    def one_client(_: int) -> list[float]:
        with api.client(who) as http:
            return [_timed(http, path) for _ in range(rounds)]

    with ThreadPoolExecutor(clients) as pool:
        concurrent = [t for ts in pool.map(one_client, range(clients)) for t in ts]
    return Timing(sequential, concurrent, status, size)


def _timed(http: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = http.get(path)
    answer.read()
    took = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
    return took


# Runs `vigil …` and reports its own peak resident set (VmHWM: of this program, not of the
# bench process it was forked from, which wait4's ru_maxrss would count).
_PEAK = """
import atexit, re, sys
def peak():
    status = open("/proc/self/status").read()
    sys.stdout.write("PEAK_KB=" + re.search(r"VmHWM:\\s+(\\d+)", status).group(1) + "\\n")
atexit.register(peak)
from vigil.cli import app
sys.argv = ["vigil", *sys.argv[1:]]
app()
"""


def run_vigil(args: Sequence[str]) -> tuple[int, float, float, str]:
    """Run ``vigil *args``: (exit code, seconds, its peak RSS in MB, output)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *args], cwd=ROOT, capture_output=True, text=True
    )
    took = time.perf_counter() - started
    found = re.search(r"PEAK_KB=(\d+)", done.stdout)
    peak = int(found.group(1)) / 1024 if found else float("nan")
    return done.returncode, took, peak, done.stdout + done.stderr
