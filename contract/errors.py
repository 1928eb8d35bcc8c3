"""The one error type the data contract raises for bad input."""


class ContractError(ValueError):
    """A payload or value does not satisfy the data contract; ``str()`` says why."""
