"""The API in a uvicorn process of its own, as deployed: for the tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from testing_services.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class ApiProcess:
    """A running ``vigil.api_app:app``: its base URL and its pid."""

    base: str
    pid: int


@contextmanager
def uvicorn_api_process(
    env: Mapping[str, str], *, workers: int = 1, start_timeout_s: float = 20.0
) -> Iterator[ApiProcess]:
    """``vigil.api_app:app`` under uvicorn on a free loopback port with ``env`` added to this
    process's environment; up once /health answers 200, terminated afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "vigil.api_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    command += ["--workers", str(workers)]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        # Polled: uvicorn signals nothing when it starts listening.
        while not answers(f"{base}/health"):
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not answer /health within {start_timeout_s} s")
            time.sleep(POLL_S)
        yield ApiProcess(base, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def answers(url: str) -> bool:
    """True when ``url`` answers 200; False while nothing listens yet."""
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False
