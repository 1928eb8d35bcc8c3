"""Retention: how long each kind of record is kept, what a prune removed, and the periodic job.

A record is pruned once it is older than its kind's retention: the stores delete (or, for the
TimescaleDB readings hypertable, drop whole chunks of) what is strictly older than a cutoff.
SQLite deletes go in bounded chunks, one transaction each, so that a large first prune never
holds the database's single write lock for long: writers get in between the chunks.

Batch claims (``ingested_batches``) are what make a resent batch a duplicate; the rule for
their retention is in ``docs/deployment.md`` ("Retention") and ``RetentionPolicy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from infra.consume import Outage
from infra.errors import StorageUnavailable

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
# Rows one SQLite prune transaction deletes at most: a few tens of milliseconds of write lock.
CHUNK_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Pruned:
    """What pruning one kind of record removed, or in a dry run would remove."""

    kind: str  # e.g. "readings", "dead_letters"
    rows: int
    older_than_us: int  # the cutoff: records strictly older were (or would be) removed
    how: str = "delete"  # "drop_chunks" for the TimescaleDB hypertable


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of record is kept, in days, and how often the prune runs.

    ``batch_claims_days`` must be at least ``readings_days``: a claim outlives the readings of
    its batch, so a batch resent after its readings were pruned is still a duplicate (and a
    resend older than that is refused by ingest's reading-age window, or pruned again).
    """

    readings_days: int = 400
    dead_letters_days: int = 90
    batch_claims_days: int = 400
    notifications_days: int = 90
    baselines_days: int = 30
    interval_s: float = 3600.0

    def __post_init__(self) -> None:
        days = (
            self.readings_days,
            self.dead_letters_days,
            self.batch_claims_days,
            self.notifications_days,
            self.baselines_days,
        )
        if min(days) < 1 or self.interval_s <= 0:
            raise ValueError(f"retention days must be >= 1 and the interval > 0: {self}")
        if self.batch_claims_days < self.readings_days:
            raise ValueError(
                f"batch_claims_days ({self.batch_claims_days}) must be at least readings_days"
                f" ({self.readings_days}): a batch resent after its claim was pruned would"
                " store its readings again"
            )


def cutoff_us(now_us: int, days: int) -> int:
    """The instant ``days`` before ``now_us``: what is older is pruned."""
    return now_us - days * DAY_US


def delete_in_chunks(delete_chunk: Callable[[int], int], chunk_rows: int = CHUNK_ROWS) -> int:
    """Call ``delete_chunk(limit)`` (one transaction each) until a call deletes fewer; the total."""
    total = 0
    while True:
        deleted = delete_chunk(chunk_rows)
        total += deleted
        if deleted < chunk_rows:
            return total


def describe(pruned: Sequence[Pruned]) -> str:
    """One line for the log: ``readings 12 (drop_chunks), dead_letters 0, …``."""
    return ", ".join(
        f"{p.kind} {p.rows}" + ("" if p.how == "delete" else f" ({p.how})") for p in pruned
    )


async def run_periodically(
    job: Callable[[], Sequence[Pruned]], interval_s: float, what: str
) -> None:
    """Run the blocking ``job`` in a thread now and every ``interval_s``, until cancelled.

    A storage outage is logged once and the next round tries again; so is a failing job (with
    its traceback): retention must never take the process that hosts it down.
    """
    outage = Outage(f"{what} retention: storage")
    while True:
        try:
            pruned = await asyncio.to_thread(job)
        except StorageUnavailable as exc:
            outage.failed(exc, interval_s)
        except Exception:
            log.exception("%s retention failed; trying again in %.0fs", what, interval_s)
        else:
            outage.recovered()
            log.info("%s retention pruned: %s", what, describe(pruned))
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def pruning(
    job: Callable[[], Sequence[Pruned]], interval_s: float, what: str
) -> AsyncIterator[None]:
    """Run ``job`` now and every ``interval_s`` (``run_periodically``) while the block runs."""
    task = asyncio.create_task(run_periodically(job, interval_s, what), name=f"{what} retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
