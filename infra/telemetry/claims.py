"""Ordering and counting the batches a write call claims."""

from __future__ import annotations

from collections.abc import Iterable

from contract import Batch
from contract.lazy_batch import reading_count


def claim_order(batches: Iterable[Batch]) -> list[Batch]:
    """Batches in one global order, first of each (gateway_id, batch_seq) only.

    Writers claiming in the same order cannot deadlock on each other's batch rows.
    """
    first: dict[tuple[str, int], Batch] = {}
    for batch in batches:
        first.setdefault((batch.gateway_id, batch.batch_seq), batch)
    return [first[key] for key in sorted(first)]


def reading_total(batches: Iterable[Batch]) -> int:
    """How many readings the batches carry, repeats included."""
    return sum(reading_count(batch) for batch in batches)
