"""Running sibling tasks that must all stop, even when one of them loses a cancellation.

On Python 3.11 ``asyncio.wait_for`` inside aiomqtt can lose a cancel that races its inner future
(CPython gh-86296); an ``asyncio.TaskGroup`` cancels its children once and then waits for ever.
``supervise`` cancels again until every child is done (as ``Gateway.__aexit__`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def supervise(*coros: Coroutine[Any, Any, None]) -> None:
    """Run ``coros`` until one fails (its exception is raised) or we are cancelled; stop all."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
    finally:
        await stop_all(tasks)


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` until each has ended; a cancel of our own meanwhile is kept for the end."""
    cancelled = False
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=1.0)
        except asyncio.CancelledError:
            cancelled = True
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.exception()  # retrieved: no "never retrieved" warnings
    if cancelled:
        raise asyncio.CancelledError
