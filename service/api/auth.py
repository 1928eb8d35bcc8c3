"""Who a bearer token names: through the token registry, or an in-memory map (tests, doubles).

Both give the app one ``authenticate(token) -> Principal | None``; neither keeps a token in
clear (the registry holds argon2id hashes, the map SHA-256 digests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from service.api.schemas import Principal, Role
from service.tokens import TokenRegistry

Authenticate = Callable[[str], Principal | None]

# Registry tokens are 61 characters (vgl_<12 hex>_<43 base64url>); nothing shorter is accepted,
# and nothing much longer is even hashed.
MIN_TOKEN_CHARS = 32
MAX_TOKEN_CHARS = 256


class TokenStoreUnreadable(Exception):
    """The token file became unreadable while the API runs (503, not 500 and not 401)."""


def token_key(token: str) -> str:
    """The digest a token is known by; only digests are held, so a memory dump leaks no token."""
    return hashlib.sha256(token.encode()).hexdigest()


def plausible(token: str) -> bool:
    """Whether ``token`` is worth looking up at all (its length is in bounds)."""
    return MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS


def digest_authenticator(tokens: Mapping[str, Principal]) -> Authenticate:
    """Authenticate against a fixed map token → principal; ValueError for a too-short token."""
    short = sum(1 for t in tokens if len(t) < MIN_TOKEN_CHARS)
    if short:
        raise ValueError(f"{short} token(s) shorter than {MIN_TOKEN_CHARS} characters")
    principals = {token_key(t): p for t, p in tokens.items()}

    def authenticate(token: str) -> Principal | None:
        return principals.get(token_key(token)) if plausible(token) else None

    return authenticate


def registry_authenticator(registry: TokenRegistry) -> Authenticate:
    """Authenticate against the token registry; revocations count from the next request on."""

    def authenticate(token: str) -> Principal | None:
        if not plausible(token):
            return None
        try:
            record = registry.lookup(token)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise TokenStoreUnreadable(f"token file {registry.path}: {exc}") from None
        if record is None:
            return None
        return Principal(role=Role(record.role), subject=record.subject)

    return authenticate
