"""A ``Batch`` held as columns, whose ``Reading`` objects are built only for a caller that asks.

The wire decoder (numpy columns, ingest) and the gateway's outbox (packed columns, stdlib only)
both hand batches around this way, so the hot path never builds a Reading per reading.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from contract.reading import Batch, Reading


class ReadingColumnsLike(Protocol):
    """Columns that know their length and can build their readings."""

    def __len__(self) -> int: ...

    def readings(self) -> tuple[Reading, ...]: ...


C = TypeVar("C", bound=ReadingColumnsLike)


class LazyBatch(Batch, Generic[C]):
    """A ``Batch`` whose readings are held as ``columns``; ``readings`` built on first use."""

    __slots__ = ("_built", "columns")
    columns: C
    _built: tuple[Reading, ...] | None

    def __init__(self, gateway_id: str, batch_seq: int, columns: C) -> None:
        # Batch is frozen: fields are set the way its own __init__ sets them.
        object.__setattr__(self, "gateway_id", gateway_id)
        object.__setattr__(self, "batch_seq", batch_seq)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "_built", None)

    @property  # read-only: the columns are the truth
    def readings(self) -> tuple[Reading, ...]:
        """The readings as contract objects, built on first use."""
        built = self._built
        if built is None:
            built = self.columns.readings()
            object.__setattr__(self, "_built", built)
        return built

    def __len__(self) -> int:
        return len(self.columns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return (self.gateway_id, self.batch_seq, self.readings) == (
            other.gateway_id,
            other.batch_seq,
            other.readings,
        )

    def __hash__(self) -> int:
        return hash((self.gateway_id, self.batch_seq, self.readings))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.gateway_id!r}, {self.batch_seq}, {len(self)} readings)"


def reading_count(batch: Batch) -> int:
    """How many readings ``batch`` carries, without building them if it is columnar."""
    return len(batch) if isinstance(batch, LazyBatch) else len(batch.readings)
