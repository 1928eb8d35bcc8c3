"""Pruning the telemetry store by its retention policy: readings, dead letters, batch claims,
and the wound baselines of patches that stopped reporting."""

from __future__ import annotations

from infra.retention import Pruned, RetentionPolicy, cutoff_us
from infra.telemetry.base import ReadingStore


def prune_telemetry(
    store: ReadingStore, policy: RetentionPolicy, now_us: int, *, dry_run: bool = False
) -> list[Pruned]:
    """Prune (or, in a dry run, count) what ``policy`` no longer keeps at ``now_us``.

    Readings go before their batch claims, which the policy keeps at least as long, so that a
    resent batch never finds its claim gone while its readings are still here to re-add to.
    """
    return [
        store.prune_readings(cutoff_us(now_us, policy.readings_days), dry_run=dry_run),
        store.prune_batch_claims(cutoff_us(now_us, policy.batch_claims_days), dry_run=dry_run),
        store.prune_dead_letters(cutoff_us(now_us, policy.dead_letters_days), dry_run=dry_run),
        store.prune_baselines(cutoff_us(now_us, policy.baselines_days), dry_run=dry_run),
    ]
