"""How the uploader authenticates to the FHIR server: none, a static bearer token, or OAuth2
client credentials (RFC 6749 §4.4, client_secret_basic), the token cached until near expiry."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import httpx

EARLY_S = 30.0  # renew a token this long before it expires


class AuthFailed(Exception):
    """The token endpoint refused or could not be reached; the upload is retried later."""


class Auth(Protocol):
    """Headers for one request, and a way to drop a token the server no longer accepts."""

    def headers(self) -> dict[str, str]:
        """The Authorization header (or none)."""
        ...

    def invalidate(self) -> None:
        """Forget the current token (the server answered 401)."""
        ...


class NoAuth:
    """No authentication (a server on a trusted network, or tests)."""

    def headers(self) -> dict[str, str]:
        """No headers."""
        return {}

    def invalidate(self) -> None:
        """Nothing to forget."""


class StaticToken:
    """One bearer token from the configuration."""

    def __init__(self, token: str) -> None:
        self._token = token

    def headers(self) -> dict[str, str]:
        """The bearer token."""
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        """A static token cannot be renewed; the next try sends it again."""


class ClientCredentials:
    """OAuth2 client credentials: a token from ``token_url``, renewed when it nears expiry."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        *,
        client: httpx.Client,
    ) -> None:
        self.token_url = token_url
        self._credentials = (client_id, client_secret)
        self._scope = scope
        self._client = client
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"} | (
            {"scope": self._scope} if self._scope else {}
        )
        try:
            response = self._client.post(self.token_url, data=form, auth=self._credentials)
        except httpx.HTTPError as exc:
            raise AuthFailed(f"token endpoint unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise AuthFailed(f"token endpoint answered {response.status_code}")
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise AuthFailed("token endpoint sent no access_token") from None
        self._token, self._expires = token, time.monotonic() + max(lifetime - EARLY_S, 1.0)

    def headers(self) -> dict[str, str]:
        """A valid bearer token, fetched when there is none or it is about to expire."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        """Fetch a new token before the next request."""
        with self._lock:
            self._token = None
