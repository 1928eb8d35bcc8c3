"""The audit events of one device and its tickets, for the device file.

The store has no index on an audit row's subject, so this walks the log in keyset chunks
(constant memory, one index range per chunk) and keeps only the newest ``MAX_EVENTS`` matches.
The device file loads it on request, not on every view, and the caller runs it under the
API's heavy-route guard.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service import audit
from service.audit_stream import stream_rows
from service.console.engineer_signature import IMAGE_ACTION, TYPED_ACTION, digest
from service.store import ServiceStore

MAX_EVENTS = 200
PNG = "image/png"
JSON = "application/json"
_SUBJECT = 4  # index of the subject in a stored audit row (``audit.to_row``)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit row as the device file lists it: the image rows show only the image's hash."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: tuple[tuple[str, str], ...]
    hash: str


def _details(action: str, data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The row's data as short key/value pairs (nested documents are left out)."""
    if action == IMAGE_ACTION:
        return (("png_sha256", str(data.get("png_sha256", ""))),)
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        if key == "doc":
            continue  # a whole installed-base document: the device itself is shown above
        if isinstance(value, dict):
            pairs += [(f"{key}.{k}", _short(v)) for k, v in value.items()]
        else:
            pairs.append((key, _short(value)))
    return tuple(pairs)


def _short(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def events_of(
    store: ServiceStore, subjects: Collection[str], limit: int = MAX_EVENTS
) -> list[AuditEvent]:
    """The newest ``limit`` audit events whose subject is one of ``subjects``, newest first."""
    wanted = set(subjects)
    found: deque[Any] = deque(maxlen=limit)
    for row in stream_rows(store):
        if row[_SUBJECT] in wanted:
            found.append(row)
    events = []
    for row in reversed(found):
        entry = audit.from_row(row)
        events.append(
            AuditEvent(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                subject=entry.subject,
                details=_details(entry.action, dict(entry.data)),
                hash=entry.hash,
            )
        )
    return events


def signed_bytes(store: ServiceStore, ticket_id: str, sha256: str) -> tuple[bytes, str] | None:
    """The signed bytes kept for ``ticket_id`` whose hash is ``sha256`` and their media type —
    a drawn PNG or a typed attestation (JSON) — or None when nothing kept matches."""
    for row in stream_rows(store):
        if row[_SUBJECT] != ticket_id:
            continue
        entry = audit.from_row(row)
        kept = _kept(entry.action, entry.data)
        if kept is not None and digest(kept[0]) == sha256:
            return kept
    return None


def _kept(action: str, data: Mapping[str, Any]) -> tuple[bytes, str] | None:
    if action == TYPED_ACTION:
        return str(data.get("attestation", "")).encode(), JSON
    if action != IMAGE_ACTION:
        return None
    try:
        return base64.b64decode(str(data.get("png_base64", "")), validate=True), PNG
    except (binascii.Error, ValueError):
        return None
