"""Rate limits (the ``limits`` library): 429 with Retry-After.

Three budgets: requests per token, manual tickets opened per token (each is auto-dispatched,
so a flood would use up the engineers), and failed authentications per client address (a
well-formed token with a wrong secret costs an argon2 verification, so guessing is throttled
before it can eat memory and CPU).

Where the budgets live: in this process's memory (moving windows), or, given a ``shared``
storage (``service.api.rate_storage``: the service database, what ``create_app`` uses on
PostgreSQL), in one place for every API process (sliding window counters), so that N processes
do not grant N budgets. While the shared storage cannot be reached, each process falls back to
its own memory windows (logged) rather than failing requests or letting them all through.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from fastapi import HTTPException, status
from limits import RateLimitItem, WindowStats, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")
FALLBACK_LOG_EVERY_S = 60.0  # one warning a minute while the shared budgets are unreachable


class Limiter(Protocol):
    """What ``RateLimits`` asks of a ``limits`` strategy."""

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool: ...
    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool: ...
    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats: ...


DEFAULT_REQUESTS = "600/minute"
DEFAULT_TICKETS = "30/hour"
DEFAULT_AUTH_FAILURES = "30/minute"


def rate(text: str) -> RateLimitItem:
    """The limit ``text`` names ("600/minute", "30 per hour"); ValueError if it names none."""
    return parse(text)


class RateLimits:
    """The API's budgets, shared by every request of one app (thread-safe)."""

    def __init__(
        self,
        requests: str = DEFAULT_REQUESTS,
        tickets: str = DEFAULT_TICKETS,
        auth_failures: str = DEFAULT_AUTH_FAILURES,
        *,
        shared: Storage | None = None,
    ) -> None:
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = SlidingWindowCounterRateLimiter(shared) if shared is not None else None
        self._warned_s = -math.inf
        self.fallbacks = 0  # budget checks answered from memory because ``shared`` failed
        self._requests = rate(requests)
        self._tickets = rate(tickets)
        self._auth_failures = rate(auth_failures)

    @property
    def shared(self) -> bool:
        """Whether the budgets are kept in a store shared by every API process."""
        return self._shared is not None

    def request(self, token_key: str) -> None:
        """Spend one request of the token's budget; 429 when it is used up."""
        self._spend(self._requests, "request", token_key, "requests for this token")

    def new_ticket(self, token_key: str) -> None:
        """Spend one manual ticket of the token's budget; 429 when it is used up."""
        self._spend(self._tickets, "ticket", token_key, "new tickets for this token")

    def may_authenticate(self, client: str) -> None:
        """429 when ``client`` has failed to authenticate too often, before any token check."""
        if not self._use(lambda limiter: limiter.test(self._auth_failures, "auth", client)):
            wait = self._retry_after(self._auth_failures, "auth", client)
            raise _too_many(self._auth_failures, wait, "failed authentications from this address")

    def failed_authentication(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        self._use(lambda limiter: limiter.hit(self._auth_failures, "auth", client))

    def _spend(self, item: RateLimitItem, kind: str, key: str, what: str) -> None:
        if not self._use(lambda limiter: limiter.hit(item, kind, key)):
            raise _too_many(item, self._retry_after(item, kind, key), what)

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset = self._use(lambda limiter: limiter.get_window_stats(item, *identifiers)).reset_time
        return max(1, math.ceil(reset - time.time()))

    def _use(self, call: Callable[[Limiter], T]) -> T:
        """``call`` on the shared budgets, or on this process's while they cannot be reached."""
        if self._shared is not None:
            try:
                return call(self._shared)
            except StorageError as exc:
                self.fallbacks += 1
                now = time.monotonic()
                if now - self._warned_s >= FALLBACK_LOG_EVERY_S:
                    self._warned_s = now
                    log.warning(
                        "shared API rate budgets unavailable (%s); this process counts alone "
                        "until they are back",
                        exc.storage_error,
                    )
        return call(self._local)


def _too_many(item: RateLimitItem, retry_after: int, what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many {what} (limit {item}); retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )
