"""sd_notify against a real unix datagram socket, the way systemd listens for it.

The last test runs `vigil gateway run` as a child process, as a ``Type=notify`` unit with
``WatchdogSec`` would: it must say READY=1, keep the watchdog fed, and say STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sd_notify import notify, supervised, watchdog_interval_s


class NotifySocket:
    """A bound datagram socket that collects what is sent to it, as systemd's does."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # what goes into NOTIFY_SOCKET
        self.received: list[str] = []

    def receive(self, timeout_s: float = 10.0) -> str:
        """The next datagram; TimeoutError if none comes in time."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(4096).decode()
        except TimeoutError:
            raise TimeoutError(f"no notification in {timeout_s}s; had {self.received}") from None
        self.received.append(data)
        return data

    def until(self, wanted: str, timeout_s: float = 30.0) -> list[str]:
        """Every datagram up to and including the first that contains ``wanted``."""
        deadline = time.monotonic() + timeout_s
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {wanted!r} in {timeout_s}s; had {seen}")
            seen.append(self.receive(left))
            if wanted in seen[-1].split("\n"):
                return seen


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield NotifySocket(sock, str(path))


@pytest.fixture
def abstract_socket() -> Iterator[NotifySocket]:
    name = f"vigil-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield NotifySocket(sock, "@" + name)


def test_notify_sends_the_state_to_a_path_socket(path_socket: NotifySocket) -> None:
    assert notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": path_socket.address})
    assert path_socket.receive() == "READY=1\nSTATUS=up"


def test_notify_reaches_an_abstract_socket(abstract_socket: NotifySocket) -> None:
    assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": abstract_socket.address})
    assert abstract_socket.receive() == "WATCHDOG=1"


@pytest.mark.parametrize(
    "environ",
    [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}],
)
def test_outside_systemd_notify_does_nothing(environ: dict[str, str]) -> None:
    assert notify("READY=1", environ) is False


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path: Path) -> None:
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_the_watchdog_interval_is_half_the_timeout_and_only_for_this_process() -> None:
    me = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({}) is None


async def test_supervised_is_ready_pings_while_healthy_and_says_stopping(
    path_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_socket.address)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    healthy = True
    async with supervised("testing", lambda: healthy):
        assert await asyncio.to_thread(path_socket.receive) == "READY=1\nSTATUS=testing"
        for _ in range(3):
            assert await asyncio.to_thread(path_socket.receive) == "WATCHDOG=1"
        healthy = False
        # Drain a ping in flight, then nothing but silence until the stop.
        await asyncio.sleep(0.05)
        path_socket.sock.setblocking(False)
        while True:
            try:
                path_socket.sock.recv(4096)
            except BlockingIOError:
                break
        await asyncio.sleep(0.1)
        with pytest.raises(BlockingIOError):
            path_socket.sock.recv(4096)
    assert await asyncio.to_thread(path_socket.receive) == "STOPPING=1"


def test_vigil_gateway_run_tells_systemd_it_is_ready_alive_and_stopping(
    tmp_path: Path, path_socket: NotifySocket
) -> None:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path_socket.address,
        "WATCHDOG_USEC": "1000000",  # WatchdogSec=1: a ping every 0.5 s
        "VIGIL_CONFIG": str(tmp_path / "absent.toml"),
        "VIGIL_GATEWAY__OUTBOX_PATH": str(tmp_path / "outbox.db"),
        "VIGIL_GATEWAY__BRIDGE_EQUIPMENT": "false",
        "VIGIL_UPLINK_BROKER__PORT": "1",  # nothing listens: the uplink keeps retrying
    }
    env.pop("WATCHDOG_PID", None)
    vigil = Path(sys.executable).parent / "vigil"
    process = subprocess.Popen(
        [str(vigil), "gateway", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        first = path_socket.until("READY=1", timeout_s=60.0)
        assert "STATUS=gateway gw-1 running" in first[-1]
        assert path_socket.until("WATCHDOG=1", timeout_s=5.0)
        assert path_socket.until("WATCHDOG=1", timeout_s=5.0)
        process.send_signal(signal.SIGTERM)
        path_socket.until("STOPPING=1", timeout_s=30.0)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
