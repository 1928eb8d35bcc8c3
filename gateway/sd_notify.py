"""systemd's readiness and watchdog protocol, without a dependency: datagrams to $NOTIFY_SOCKET.

Under a ``Type=notify`` unit the gateway says ``READY=1`` once its outbox is open and its tasks
run, then ``WATCHDOG=1`` every half ``WatchdogSec`` while it is healthy. An event loop that
hangs (a blocking call, a deadlock) stops the pings, and systemd kills and restarts the process;
a gateway task that dies stops them too, though the gateway exits by itself then. Outside
systemd (no ``NOTIFY_SOCKET``) every call does nothing. See sd_notify(3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping

log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    """The socket address in ``NOTIFY_SOCKET``: a path, or ``@name`` in the abstract namespace."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None  # unset, or a transport this module does not speak (vsock)


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run under it or it failed."""
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        # systemd gone or restarted: a missed ping is its business, not a reason to die.
        log.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc)
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """How often to ping: half of ``WATCHDOG_USEC`` when it is meant for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # inherited from a parent that is the watched one
    return int(usec) / 2e6


async def keep_alive(interval_s: float, healthy: Callable[[], bool]) -> None:
    """Ping the watchdog every ``interval_s`` while ``healthy()``; until cancelled."""
    while True:
        if healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def supervised(status: str, healthy: Callable[[], bool]) -> AsyncIterator[None]:
    """Tell systemd we are ready (with ``status``), keep its watchdog fed, say when stopping."""
    notify(f"READY=1\nSTATUS={status}")
    interval = watchdog_interval_s()
    pinger = asyncio.create_task(keep_alive(interval, healthy)) if interval else None
    try:
        yield
    finally:
        notify("STOPPING=1")
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
