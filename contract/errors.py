"""The one error type the data contract raises for bad input."""

from pydantic import ValidationError


class ContractError(ValueError):
    """A payload or value does not satisfy the data contract; ``str()`` says why."""


def printable(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters with every non-printable character escaped.

    Reasons quote hostile input; escaped, they are safe to store (no NUL for PostgreSQL, no lone
    surrogate for UTF-8) and to print on a terminal (no escape sequences, no newlines).
    """
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def invalid(what: str, exc: ValidationError, limit: int = 3) -> ContractError:
    """A ContractError naming ``what`` and the first failing fields, for dead letters and logs."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{printable(where, 80)}: {err['msg']}")
    more = exc.error_count() - len(parts)
    text = f"{what}: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return ContractError(printable(text, 1000))
