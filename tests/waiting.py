"""Waiting on a condition with a deadline: the one way tests synchronise with what they run.

A fixed sleep is either too short on a loaded machine (flaky) or too long everywhere (slow);
polling a predicate until a deadline is neither, and says what it waited for when it fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_S = 0.02


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    what: str = "condition",
    *,
    poll_s: float = POLL_S,
) -> None:
    """Poll ``predicate`` until it is truthy; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: still not true after {timeout}s")
        time.sleep(poll_s)


async def wait_until_async(
    predicate: Callable[[], object],
    timeout: float = 30.0,  # noqa: ASYNC109 - wait_until's signature; polling keeps the deadline
    what: str = "condition",
    *,
    poll_s: float = POLL_S,
) -> None:
    """``wait_until`` for the event loop: polls without blocking the tasks it waits on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # Polled: the state lives in stores, brokers and other processes, which signal nothing.
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(f"{what}: still not true after {timeout}s")
        await asyncio.sleep(poll_s)
