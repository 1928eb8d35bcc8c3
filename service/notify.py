"""Signed webhooks with retries and backoff, every try recorded.

The signature scheme (timestamp, event id, event name and body under one HMAC-SHA256) and the
reference verifier receivers use are in ``contract.webhooks``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

# Re-exported: the topic helpers moved to contract.topics and older imports still name them here.
from contract.topics import NOTIFICATIONS_PREFIX as NOTIFICATIONS_PREFIX
from contract.topics import notification_topic as notification_topic
from contract.webhooks import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from service.model import Delivery


@dataclass(frozen=True, slots=True)
class Webhook:
    """A subscriber endpoint and the secret shared with it."""

    url: str
    secret: bytes


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry: delay = min(cap, base * factor ** (attempt - 1))."""

    attempts: int = 5
    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based)."""
        return float(min(self.cap, self.base * self.factor ** (attempt - 1)))


class Sender(Protocol):
    """Posts a body; returns the HTTP status or raises on transport failure."""

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> Awaitable[int]:
        """Send one request."""
        ...


def _retryable(status: int) -> bool:
    # Other 4xx mean the request itself is wrong: repeating it cannot help.
    return status >= 500 or status in (408, 429)


async def attempt(
    webhook: Webhook,
    event_id: str,
    event: str,
    payload: Mapping[str, Any],
    number: int,
    *,
    send: Sender,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Delivery:
    """POST ``payload`` once as attempt ``number``; the Delivery says how it went."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    at = clock()
    stamp = int(at.timestamp())
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(webhook.secret, stamp, event_id, event, body),
        TIMESTAMP_HEADER: str(stamp),
        EVENT_HEADER: event,
        # Delivery is at least once: receivers drop an event id they have already seen.
        EVENT_ID_HEADER: event_id,
        "X-Vigil-Delivery": f"{event_id}/{number}",
    }
    status: int | None = None
    error = ""
    try:
        status = await send(webhook.url, body, headers)
    except (httpx.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    ok = status is not None and 200 <= status < 300
    if status is not None and not ok:
        error = f"HTTP {status}"
    return Delivery(
        event_id=event_id, url=webhook.url, attempt=number, at=at, status=status, ok=ok, error=error
    )


def worth_retrying(delivery: Delivery) -> bool:
    """True when a failed attempt may succeed later (transport error, 5xx, 408, 429)."""
    return not delivery.ok and (delivery.status is None or _retryable(delivery.status))


async def deliver(
    webhook: Webhook,
    event_id: str,
    event: str,
    payload: Mapping[str, Any],
    *,
    send: Sender,
    record: Callable[[Delivery], None],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    policy: RetryPolicy = RetryPolicy(),
) -> bool:
    """POST ``payload`` until a 2xx or a permanent failure; record every attempt; True if done."""
    for number in range(1, policy.attempts + 1):
        delivery = await attempt(webhook, event_id, event, payload, number, send=send, clock=clock)
        record(delivery)
        if delivery.ok:
            return True
        if not worth_retrying(delivery):
            return False
        if number < policy.attempts:
            await sleep(policy.delay(number))
    return False


class HttpSender:
    """Sender over one pooled httpx client; use as ``async with HttpSender() as send``."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def __aenter__(self) -> HttpSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` and return the status."""
        response = await self._client.post(url, content=body, headers=dict(headers))
        return response.status_code
