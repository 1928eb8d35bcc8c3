"""The storage seam: what every reading store does, and the values it takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from contract import AlertEvent, Batch, Reading, WoundBaseline
from infra.errors import Poison
from infra.retention import Pruned

# The integer range both backends store (SQLite INTEGER, PostgreSQL bigint).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload ingest could not use, kept with why so that it can be inspected or replayed."""

    received_at_us: int
    source: str
    reason: str
    payload: bytes
    gateway_id: str | None = None
    batch_seq: int | None = None
    # Assigned by the store (None until stored); not part of equality: the same letter read
    # back equals the one written.
    id: int | None = field(default=None, compare=False)


class BadBatch(Poison):
    """The database refused a batch for its data (NUL in a text, a value out of range, …).

    Retrying the same batch will never help, so it is ``Poison``, never ``StorageUnavailable``:
    the consume loop retries a group message by message and dead-letters the one that still
    fails, with ``str(exc)`` (which names the batches of the call) as the reason.
    """

    @classmethod
    def of(cls, batches: Sequence[Batch], cause: BaseException) -> BadBatch:
        """A BadBatch naming ``batches`` (gateway id and batch_seq) and the database's words."""
        names = ", ".join(f"{b.gateway_id!r}/{b.batch_seq}" for b in batches[:5])
        more = f" (+{len(batches) - 5} more)" if len(batches) > 5 else ""
        what = "batch" if len(batches) == 1 else "one of the batches"
        detail = " ".join(str(cause).split())  # PostgreSQL's CONTEXT lines onto one line
        return cls(f"{what} {names}{more} cannot be stored: {type(cause).__name__}: {detail}")


def storable_letter(letter: DeadLetter) -> DeadLetter:
    """``letter`` with what no database column can hold made safe, so storing it cannot fail.

    A dead letter describes bad input, so its texts may carry NUL or lone surrogates and its
    batch_seq may be out of range; the raw payload (bytes) keeps the original untouched.
    """
    seq = letter.batch_seq
    return DeadLetter(
        letter.received_at_us,
        _storable_text(letter.source),
        _storable_text(letter.reason),
        letter.payload,
        None if letter.gateway_id is None else _storable_text(letter.gateway_id),
        seq if seq is None or INT64_MIN <= seq <= INT64_MAX else None,
    )


def _storable_text(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped (PostgreSQL text and UTF-8 reject them)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What one ``store_batches`` call did.

    ``readings_duplicate`` counts readings of newly stored batches that were already stored
    (through another batch, or twice in this call); readings of duplicate batches are not
    counted there, only the batch in ``batches_duplicate``.
    """

    readings_inserted: int = 0
    batches_new: int = 0
    batches_duplicate: int = 0
    readings_duplicate: int = 0


# An alert event's place in time order: (at_us, device_id, rule_id, transition).
AlertKey = tuple[int, str, str, str]


def alert_key(event: AlertEvent) -> AlertKey:
    """``event``'s place in the time order of ``alert_page``."""
    return (event.at_us, event.device_id, event.rule_id, event.transition.value)


class Bucket(NamedTuple):
    """Min, avg, max and number of samples of one metric in one epoch-aligned time bucket."""

    bucket_start_us: int
    min: float
    avg: float
    max: float
    samples: int


class ReadingStore(Protocol):
    """Durable, idempotent storage for readings, dead letters and alert events.

    Alert events double as the rules' publish outbox: stored unpublished, marked once the broker
    has acknowledged them, so a crash or outage in between leaves them to be published again.

    Synchronous: one instance per worker thread, called from async code via asyncio.to_thread.
    Any call may raise ``StorageUnavailable`` during an outage; a later call reconnects.
    Time ranges are half-open: ``since_us`` inclusive, ``until_us`` exclusive.
    """

    def migrate(self) -> None:
        """Create the schema if it is missing; safe to call any number of times."""
        ...

    def store_batches(self, batches: Sequence[Batch]) -> StoreOutcome:
        """Store all ``batches`` in one transaction, skipping batches and readings already kept."""
        ...

    def store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Append dead letters."""
        ...

    def store_alert_events(self, events: Sequence[AlertEvent]) -> int:
        """Store alert events, ignoring ones already stored; return how many were new."""
        ...

    def unpublished_alert_events(self, limit: int = 1000) -> list[AlertEvent]:
        """Up to ``limit`` stored alert events not yet marked published, oldest first."""
        ...

    def mark_alerts_published(self, events: Sequence[AlertEvent]) -> None:
        """Mark stored alert events published (by key); repeats and unknown events are no-ops."""
        ...

    def fetch_readings(
        self,
        *,
        device_id: str | None = None,
        metric: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        """Stored readings matching every given filter, ordered by timestamp then seq."""
        ...

    def bucketed(
        self, device_id: str, metric: str, bucket_seconds: int, since_us: int, until_us: int
    ) -> list[Bucket]:
        """Min, avg, max and count of one device's metric per epoch-aligned bucket, in order."""
        ...

    def fetch_alert_events(self, device_id: str | None = None) -> list[AlertEvent]:
        """Stored alert events, optionally for one device, ordered by time."""
        ...

    def latest_by_device(
        self, device_ids: Sequence[str], since_us: int | None = None
    ) -> list[Reading]:
        """The latest reading of each metric of each device (taken at or after ``since_us``),
        ordered by device and metric: one query, however many devices."""
        ...

    def alert_page(
        self,
        device_ids: Sequence[str] | None,
        *,
        after: AlertKey | None = None,
        limit: int = 100,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[AlertEvent]:
        """Alert events of ``device_ids`` (None: all) in [since_us, until_us), in time order,
        after the key ``after``."""
        ...

    def active_alerts(self, device_ids: Sequence[str]) -> list[AlertEvent]:
        """The last event of each (device, rule) of ``device_ids`` whose alert is not cleared."""
        ...

    def store_baselines(self, baselines: Sequence[WoundBaseline]) -> None:
        """Keep the latest of each (device, rule): newer rows replace older ones."""
        ...

    def baselines(self, device_ids: Sequence[str]) -> list[WoundBaseline]:
        """The stored baselines of ``device_ids``, ordered by device and rule: one query."""
        ...

    def reading_count(self) -> int:
        """How many readings are stored."""
        ...

    def reading_checksum(self) -> tuple[int, float]:
        """Count and sum of values of all stored readings, for reconciliation."""
        ...

    def dead_letter_count(self) -> int:
        """How many dead letters are stored."""
        ...

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """The most recent ``limit`` dead letters after skipping ``offset``, newest first."""
        ...

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        """One stored dead letter by id, or None."""
        ...

    def prune_readings(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove readings older than ``older_than_us`` (a dry run only counts them).

        TimescaleDB drops whole chunks, so readings up to one chunk (a day) past the cutoff
        may stay until the next prune; SQLite deletes exactly, in bounded transactions.
        """
        ...

    def prune_dead_letters(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove dead letters received before ``older_than_us`` (a dry run only counts them)."""
        ...

    def prune_baselines(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Remove wound baselines whose newest reading is older than ``older_than_us``: the
        rows of patches that stopped reporting (a reporting patch's row is rewritten daily)."""
        ...

    def prune_batch_claims(self, older_than_us: int, *, dry_run: bool = False) -> Pruned:
        """Forget batches ingested before ``older_than_us`` (a dry run only counts them).

        A forgotten batch resent later is stored as new; its readings already kept are still
        skipped (their key is unique), so prune claims only once their readings are gone too
        (``RetentionPolicy``: batch claims are kept at least as long as readings).
        """
        ...

    def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""
        ...

    def __enter__(self) -> Self:
        """Use the store as a context manager that closes it on exit."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...


class StoreContext:
    """Mixin giving a store with ``close()`` context-manager support."""

    def close(self) -> None:
        """Release resources; overridden by each backend."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Return the store itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()


def check_bucket_seconds(bucket_seconds: int) -> None:
    """Raise ValueError unless the bucket width is a positive whole number of seconds."""
    if bucket_seconds <= 0:
        raise ValueError(f"bucket_seconds must be positive, got {bucket_seconds}")
