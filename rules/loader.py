"""Load and check YAML rule files and the shipped rule packs."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rules.errors import RuleFileError, RuleProblem
from rules.model import AnyRule, BatteryLowRule, CompositeRule, RuleFile

PACKS = ("dressings", "equipment")


def load_rule_file(path: str | Path) -> list[AnyRule]:
    """The validated rules in one YAML file; raise RuleFileError naming file, rule and field."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(name, [RuleProblem("", "", f"cannot read: {exc.strerror}")]) from None
    return parse_rules(text, name)


def load_pack(name: str) -> list[AnyRule]:
    """A shipped rule pack by name (``dressings`` or ``equipment``)."""
    if name not in PACKS:
        raise KeyError(f"unknown rule pack {name!r}; shipped packs are {', '.join(PACKS)}")
    text = resources.files("rules.packs").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return parse_rules(text, f"pack:{name}")


def check_rule_file(path: str | Path) -> list[str]:
    """Every problem with a rule file as a line of text; empty when it is valid."""
    try:
        load_rule_file(path)
    except RuleFileError as exc:
        return [f"{exc.path}: {problem}" for problem in exc.problems]
    return []


def parse_rules(text: str, origin: str = "<rules>") -> list[AnyRule]:
    """Validate YAML rule text; ``origin`` names it in errors."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleFileError(origin, [RuleProblem("", "", f"not valid YAML: {exc}")]) from None
    try:
        parsed = RuleFile.model_validate(doc)
    except ValidationError as exc:
        raise RuleFileError(origin, _problems(exc, doc)) from None
    try:
        return list(check_rule_set(parsed.rules))
    except RuleFileError as exc:
        raise RuleFileError(origin, exc.problems) from None


def check_rule_set(rules: Sequence[AnyRule]) -> list[AnyRule]:
    """Cross-rule checks: unique ids, composites name existing rules without cycles."""
    problems: list[RuleProblem] = []
    ids: set[str] = set()
    for rule in rules:
        if rule.id in ids:
            problems.append(RuleProblem(rule.id, "id", "duplicate rule id"))
        ids.add(rule.id)
    composites = {r.id: r for r in rules if isinstance(r, CompositeRule)}
    for rule in composites.values():
        for ref in rule.components:
            if ref not in ids:
                problems.append(RuleProblem(rule.id, "all_of/any_of", f"unknown rule {ref!r}"))
            elif ref == rule.id:
                problems.append(RuleProblem(rule.id, "all_of/any_of", "refers to itself"))
    if not problems:
        cycle = _find_cycle(composites)
        if cycle:
            problems.append(
                RuleProblem(cycle[0], "all_of/any_of", "composite cycle: " + " -> ".join(cycle))
            )
    if problems:
        raise RuleFileError("<rules>", problems)
    return list(rules)


def normalize_rules(rules: Sequence[AnyRule]) -> list[AnyRule]:
    """Checked rules with sugar expanded and composites after the rules they depend on."""
    checked = check_rule_set(rules)
    plain: list[AnyRule] = [r.expand() if isinstance(r, BatteryLowRule) else r for r in checked]
    base = [r for r in plain if not isinstance(r, CompositeRule)]
    composites = {r.id: r for r in plain if isinstance(r, CompositeRule)}
    ordered: list[AnyRule] = []
    placed: set[str] = set()

    def place(rule: CompositeRule) -> None:
        if rule.id in placed:
            return
        for ref in rule.components:
            if ref in composites:
                place(composites[ref])
        placed.add(rule.id)
        ordered.append(rule)

    for rule in composites.values():
        place(rule)
    return base + ordered


def _find_cycle(composites: dict[str, CompositeRule]) -> list[str]:
    """A composite reference cycle as a path of ids, or empty."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(rid: str) -> list[str]:
        state[rid] = 1
        path.append(rid)
        for ref in composites[rid].components:
            if ref not in composites:
                continue
            if state.get(ref) == 1:
                return [*path[path.index(ref) :], ref]
            if ref not in state and (found := visit(ref)):
                return found
        path.pop()
        state[rid] = 2
        return []

    for rid in composites:
        if rid not in state and (found := visit(rid)):
            return found
    return []


def _problems(exc: ValidationError, doc: Any) -> list[RuleProblem]:
    """Map pydantic errors onto (rule id, field) using the raw document for ids."""
    raw_rules = doc.get("rules") if isinstance(doc, dict) else None
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        rule_id = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            raw = raw_rules[index] if isinstance(raw_rules, list) else None
            rule_id = (
                str(raw.get("id")) if isinstance(raw, dict) and "id" in raw else (f"#{index + 1}")
            )
            loc = loc[2:]
            if loc and isinstance(raw, dict) and loc[0] == raw.get("kind"):
                loc = loc[1:]  # drop the discriminator tag pydantic inserts
        field = ".".join(str(p) for p in loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            message = f"unknown kind; {message}"
            field = field or "kind"
        elif err["type"] == "union_tag_not_found":
            field = field or "kind"
        problems.append(RuleProblem(rule_id, field, message))
    return problems
