"""What the API needs to start: where its stores are and where its bearer tokens come from."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from service.api.schemas import Principal

TOKENS_EXAMPLE = (
    '{"<admin token>": {"role": "admin"}, "<s1 token>": {"role": "hospital", "subject": "s1"}}'
)


class ApiSettings(BaseModel):
    """The API's settings, passed in explicitly; nothing is read from the environment."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    store_url: str
    """Service store: sqlite:///path or postgresql://…"""
    tokens_file: Path
    """JSON file of bearer tokens: token → {"role": …, "subject": …}."""
    readings_url: str | None = None
    """Readings store for readings and alerts; None: the API has none."""


class TokensUnavailable(Exception):
    """The tokens file is missing or unreadable; the message says how to fix it."""


def load_tokens(path: Path) -> dict[str, Principal]:
    """The principals of the tokens file ``path``; TokensUnavailable with a clear message."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokensUnavailable(
            f"tokens file {path} does not exist. Create it with one entry per bearer token, "
            f"e.g. {TOKENS_EXAMPLE} (roles: admin, engineer, hospital, patient)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensUnavailable(f"tokens file {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise TokensUnavailable(f"tokens file {path} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise TokensUnavailable(f"tokens file {path} must hold a JSON object: token → principal")
    try:
        return {str(token): Principal.model_validate(p) for token, p in raw.items()}
    except ValidationError as exc:
        raise TokensUnavailable(f"tokens file {path} has an invalid principal: {exc}") from None
