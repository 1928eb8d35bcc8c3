"""Run a long-lived coroutine until SIGTERM or SIGINT, letting its context managers close."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any


def run_until_stopped(main: Coroutine[Any, Any, None], grace_s: float = 1.0) -> None:
    """``asyncio.run(main)``, cancelling it on SIGTERM/SIGINT instead of dying mid-write.

    Cancellation unwinds ``async with`` blocks, so e.g. the rule runtime writes its last snapshot.
    """

    async def guarded() -> None:
        task = asyncio.create_task(main)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        # Cancel again until it takes: on Python 3.11 asyncio.wait_for (inside aiomqtt) loses a
        # cancel that races its inner future completing (CPython gh-86296).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=grace_s)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    asyncio.run(guarded())
