"""Pruning the service store by its retention policy: finished notifications and dead letters.

Tickets and the audit log are not pruned: the audit log is append-only by design (its rows are
a hash chain), and tickets are the service history the audit log refers to.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from infra.retention import Pruned, RetentionPolicy
from service.store import ServiceStore


def prune_service(
    store: ServiceStore, policy: RetentionPolicy, now: datetime, *, dry_run: bool = False
) -> list[Pruned]:
    """Prune (or, in a dry run, count) what ``policy`` no longer keeps at ``now``."""
    notifications = now - timedelta(days=policy.notifications_days)
    letters = now - timedelta(days=policy.dead_letters_days)
    return [
        store.prune_notifications(notifications, dry_run=dry_run),
        store.prune_deliveries(notifications, dry_run=dry_run),
        store.prune_dead_letters(letters, dry_run=dry_run),
    ]
