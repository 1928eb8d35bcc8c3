"""Rate limits (the ``limits`` library, moving windows, in memory): 429 with Retry-After.

Three budgets: requests per token, manual tickets opened per token (each is auto-dispatched,
so a flood would use up the engineers), and failed authentications per client address (a
well-formed token with a wrong secret costs an argon2 verification, so guessing is throttled
before it can eat memory and CPU). In-memory windows are per process: a deployment with
several API processes multiplies the budgets by their number.
"""

from __future__ import annotations

import math
import time

from fastapi import HTTPException, status
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

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
    ) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._requests = rate(requests)
        self._tickets = rate(tickets)
        self._auth_failures = rate(auth_failures)

    def request(self, token_key: str) -> None:
        """Spend one request of the token's budget; 429 when it is used up."""
        self._spend(self._requests, "request", token_key, "requests for this token")

    def new_ticket(self, token_key: str) -> None:
        """Spend one manual ticket of the token's budget; 429 when it is used up."""
        self._spend(self._tickets, "ticket", token_key, "new tickets for this token")

    def may_authenticate(self, client: str) -> None:
        """429 when ``client`` has failed to authenticate too often, before any token check."""
        if not self._limiter.test(self._auth_failures, "auth", client):
            wait = self._retry_after(self._auth_failures, "auth", client)
            raise _too_many(self._auth_failures, wait, "failed authentications from this address")

    def failed_authentication(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        self._limiter.hit(self._auth_failures, "auth", client)

    def _spend(self, item: RateLimitItem, kind: str, key: str, what: str) -> None:
        if not self._limiter.hit(item, kind, key):
            raise _too_many(item, self._retry_after(item, kind, key), what)

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset - time.time()))


def _too_many(item: RateLimitItem, retry_after: int, what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many {what} (limit {item}); retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )
