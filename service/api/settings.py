"""What the API needs to start: its stores, its token registry and the limits it enforces."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.api.body_limit import DEFAULT_MAX_BODY_BYTES
from service.api.rate import DEFAULT_AUTH_FAILURES, DEFAULT_REQUESTS, DEFAULT_TICKETS, rate
from service.tokens import ROLES, TokenRegistry

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "testserver")


class ApiGuards(BaseModel):
    """The limits the API enforces; every default is safe for a single API process."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    allowed_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS))
    """Host names (``Host:`` header) the API answers to; others get 400. "*.example.org" works."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest request body; larger ones get 413 before they are parsed or authenticated."""
    body_limits: dict[str, int] = {}
    """Path prefix → larger (or smaller) body limit, for the routes that need one."""
    rate_limit: str = DEFAULT_REQUESTS
    """Requests per token, e.g. "600/minute"; then 429 with Retry-After."""
    ticket_rate_limit: str = DEFAULT_TICKETS
    """Manual tickets opened per token, e.g. "30/hour"."""
    auth_failure_limit: str = DEFAULT_AUTH_FAILURES
    """Failed authentications per client address before it gets 429, e.g. "30/minute"."""

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if host == "*" or "*" in host[1:] or (host.startswith("*") and host[:2] != "*."):
                raise ValueError(f"{host!r}: name the hosts; only '*.domain' wildcards are allowed")
        if not hosts:
            raise ValueError("at least one allowed host is needed")
        return hosts

    @field_validator("rate_limit", "ticket_rate_limit", "auth_failure_limit")
    @classmethod
    def _rate(cls, text: str) -> str:
        rate(text)  # ValueError names what is wrong
        return text


class ApiSettings(ApiGuards):
    """The API's settings, passed in explicitly; nothing is read from the environment."""

    store_url: str
    """Service store: sqlite:///path or postgresql://…"""
    tokens_file: Path
    """The token registry (``vigil tokens add|list|revoke``): argon2id hashes, no secrets."""
    readings_url: str | None = None
    """Readings store for readings and alerts; None: the API has none."""
    audit_key_file: Path | None = None
    """Ed25519 key signing the audit rows the API writes (as the worker does); None: unsigned."""


class TokensUnavailable(Exception):
    """The token file is missing, unreadable or empty; the message says how to fix it."""


def open_registry(path: Path) -> TokenRegistry:
    """The token registry at ``path``; TokensUnavailable (saying what to run) if it is unusable."""
    mint = f"vigil tokens add --role admin --file {path}"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokensUnavailable(
            f"tokens file {path} does not exist. Mint the first token with `{mint}` "
            "(it is printed once; the file keeps only its hash)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensUnavailable(f"tokens file {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TokensUnavailable(f"tokens file {path} is not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tokens"), list):
        raise TokensUnavailable(
            f"tokens file {path} is not a token registry (the old plain-token format is no "
            f"longer read): mint new tokens with `{mint}` (or --role engineer|hospital|patient "
            "--subject ID) into a new file."
        )
    registry = TokenRegistry(path)
    try:
        records = registry.records()
    except (TypeError, KeyError, ValueError) as exc:
        raise TokensUnavailable(f"tokens file {path} has an invalid record: {exc}") from None
    bad = sorted({r.role for r in records} - set(ROLES))
    if bad:
        raise TokensUnavailable(f"tokens file {path} has unknown roles: {', '.join(bad)}")
    if not records:
        raise TokensUnavailable(f"tokens file {path} holds no token. Mint one with `{mint}`.")
    return registry
