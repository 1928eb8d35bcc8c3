"""The one error type for unusable rule files."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One thing wrong with a rule file, located by rule id and field."""

    rule_id: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"rule {self.rule_id!r}" if self.rule_id else "file"
        return f"{where}: {self.field or '-'}: {self.message}"


class RuleFileError(ValueError):
    """A rule file (or rule set) is invalid; ``str()`` names the file, rule ids and fields."""

    def __init__(self, path: str, problems: list[RuleProblem]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {problem}" for problem in problems]
        super().__init__("\n".join(lines) if lines else f"{path}: invalid rule file")
