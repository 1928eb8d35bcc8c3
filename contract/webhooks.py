"""Webhook signatures, and the reference verifier a receiver can copy (standard library only).

Every webhook vigil sends carries::

    X-Vigil-Timestamp: <Unix seconds>
    X-Vigil-Event-Id:  <unique per event and recipient; the same on every retry>
    X-Vigil-Event:     <event name, e.g. ticket.dispatched>
    X-Vigil-Signature: v1=<hex HMAC-SHA256(secret, signing_input(...))>

The signature covers the timestamp, the event id, the event name and the body, so none of them
can be swapped on a captured request: replaying it under a fresh event id (to get past the
receiver's de-duplication) breaks the signature, and replaying it unchanged is caught by the
receiver remembering the event ids it has seen within the timestamp tolerance
(``WebhookVerifier``). The scheme is in the spirit of Stripe's webhook signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

SIGNATURE_HEADER = "X-Vigil-Signature"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"
EVENT_HEADER = "X-Vigil-Event"
EVENT_ID_HEADER = "X-Vigil-Event-Id"
SCHEME = "v1"
TOLERANCE_S = 300


class WebhookRejected(ValueError):
    """A webhook request that must not be acted on; ``str()`` says why."""


def signing_input(timestamp: int, event_id: str, event: str, body: bytes) -> bytes:
    """The exact bytes signed: the header fields as a JSON array, a newline, then the body."""
    return json.dumps([timestamp, event_id, event], separators=(",", ":")).encode() + b"\n" + body


def sign(secret: bytes, timestamp: int, event_id: str, event: str, body: bytes) -> str:
    """The ``X-Vigil-Signature`` value for one request."""
    mac = hmac.new(secret, signing_input(timestamp, event_id, event, body), hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """A request that passed every check: who it is and what it says."""

    event_id: str
    event: str
    timestamp: int
    body: bytes


@dataclass
class WebhookVerifier:
    """A receiver's check: signature, freshness, and no event id accepted twice.

    Keep one per secret for the life of the receiving process (or back ``seen`` with a shared
    store when several processes receive): an id needs remembering only as long as its
    timestamp is within the tolerance, because an older request is refused as stale anyway.
    """

    secret: bytes
    tolerance_s: int = TOLERANCE_S
    seen: dict[str, int] = field(default_factory=dict)  # event id → its timestamp

    def verify(
        self, headers: Mapping[str, str], body: bytes, now_s: float | None = None
    ) -> VerifiedEvent:
        """The verified event; WebhookRejected naming why when it must be dropped."""
        now = time.time() if now_s is None else now_s
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            stamp = int(lower[TIMESTAMP_HEADER.lower()])
            event_id = lower[EVENT_ID_HEADER.lower()]
            event = lower[EVENT_HEADER.lower()]
            given = lower[SIGNATURE_HEADER.lower()]
        except (KeyError, ValueError):
            raise WebhookRejected("missing or malformed vigil headers") from None
        if abs(now - stamp) > self.tolerance_s:
            raise WebhookRejected(f"timestamp {stamp} is outside the {self.tolerance_s}s window")
        expected = sign(self.secret, stamp, event_id, event, body)
        if not hmac.compare_digest(expected, given):
            raise WebhookRejected("signature does not match")
        self._forget_before(now - self.tolerance_s)
        if event_id in self.seen:
            raise WebhookRejected(f"event {event_id} was already received (replay)")
        self.seen[event_id] = stamp
        return VerifiedEvent(event_id, event, stamp, body)

    def _forget_before(self, cutoff: float) -> None:
        for event_id in [k for k, stamp in self.seen.items() if stamp < cutoff]:
            del self.seen[event_id]
