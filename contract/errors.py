"""The one error type the data contract raises for bad input."""

from pydantic import ValidationError


class ContractError(ValueError):
    """A payload or value does not satisfy the data contract; ``str()`` says why."""


def invalid(what: str, exc: ValidationError, limit: int = 3) -> ContractError:
    """A ContractError naming ``what`` and the first failing fields, for dead letters and logs."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return ContractError(f"{what}: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else ""))
