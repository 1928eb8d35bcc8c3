"""Exporting signed checkpoints of the audit chain: to a file, and to the service team.

Run on the worker's tick. A checkpoint is written only when the head moved, appended to a file
(one JSON line each, for the auditor's copy) and queued as an ``audit.checkpoint`` notification
to the service team, which the notification outbox delivers by MQTT and webhook with retries.
Both leave the database's reach, which is what makes them evidence against its operators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.checkpoint import Checkpoint, sign_checkpoint
from service.notifications import Notification, NotifyConfig, outbox_items
from service.store import ServiceStore


@dataclass
class CheckpointExporter:
    """Signs the audit head when it moved and sends the checkpoint out."""

    key: Ed25519PrivateKey
    path: Path | None = None
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    last_seq: int = 0

    def export(self, store: ServiceStore, now: datetime) -> Checkpoint | None:
        """A new checkpoint of ``store``'s head, exported; None when the head did not move."""
        head = store.audit_head()  # one row, however long the log
        if head is None or head.seq == self.last_seq:
            return None
        checkpoint = sign_checkpoint(self.key, head, now)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(checkpoint.to_json() + "\n")
        note = Notification(
            "service",
            "team",
            "audit.checkpoint",
            json.loads(checkpoint.to_json()),
            occurrence=str(checkpoint.seq),
        )
        store.enqueue_notifications(outbox_items([note], self.notify, now))
        self.last_seq = checkpoint.seq
        return checkpoint
