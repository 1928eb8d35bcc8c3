"""Rule files and packs load; bad files fail naming the file, the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.catalog import METRICS
from rules import PACKS, RuleFileError, check_rule_file, load_pack, load_rule_file
from rules.model import CompositeRule, SilenceRule

GOOD = """
rules:
  - id: ph
    kind: sustained
    severity: warning
    scope: {metric: wound_ph}
    raise: {above: 7.3, for: 6h}
    clear: {below: 7.0}
    source: Gethin 2007
"""


@pytest.mark.parametrize("name", PACKS)
def test_packs_load_with_sources_and_default_marker(name: str) -> None:
    rules = load_pack(name)
    assert rules
    for rule in rules:
        assert rule.default, rule.id
        assert len(rule.source) > 20, rule.id
        metric = rule.scope.metric
        assert metric is None or metric in METRICS
        assert (
            isinstance(rule, SilenceRule | CompositeRule) or metric or rule.kind == ("battery_low")
        )


def test_unknown_pack() -> None:
    with pytest.raises(KeyError, match="unknown rule pack"):
        load_pack("nope")


def test_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD)
    (rule,) = load_rule_file(path)
    assert rule.id == "ph"
    assert check_rule_file(path) == []


@pytest.mark.parametrize(
    ("change", "rule_id", "field", "fragment"),
    [
        (("above: 7.3, for: 6h", "above: hot, for: 6h"), "ph", "raise.above", "number"),
        (("for: 6h", "for: 6 hours"), "ph", "raise.for", "duration"),
        (("metric: wound_ph", "metric: wound_ph_x"), "ph", "scope.metric", "unknown metric"),
        (("kind: sustained", "kind: sustain"), "ph", "kind", "unknown kind"),
        (("severity: warning", "severity: dire"), "ph", "severity", "unknown severity"),
        (("    source: Gethin 2007\n", ""), "ph", "source", "Field required"),
        (("clear: {below: 7.0}", "clear: {below: 7.0, above: 8}"), "ph", "clear", "exactly one"),
        (("above: 7.3, for: 6h", "above: 7.3"), "ph", "", "raise.for greater than zero"),
    ],
)
def test_errors_name_file_rule_and_field(
    tmp_path: Path, change: tuple[str, str], rule_id: str, field: str, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    text = str(info.value)
    assert str(path) in text
    assert f"rule {rule_id!r}" in text
    assert field in text
    assert fragment in text
    assert check_rule_file(path) == text.splitlines()


def test_cross_rule_problems(tmp_path: Path) -> None:
    path = tmp_path / "cross.yaml"
    path.write_text(
        GOOD
        + GOOD.split("rules:\n")[1]
        + """
  - {id: c1, kind: composite, severity: info, source: s, all_of: [c2]}
  - {id: c2, kind: composite, severity: info, source: s, any_of: [c1, ghost]}
"""
    )
    problems = check_rule_file(path)
    assert any("rule 'ph': id: duplicate rule id" in p for p in problems)
    assert any("rule 'c2'" in p and "unknown rule 'ghost'" in p for p in problems)


def test_composite_cycle(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text("""rules:
  - {id: c1, kind: composite, severity: info, source: s, all_of: [c2]}
  - {id: c2, kind: composite, severity: info, source: s, any_of: [c1]}
""")
    (problem,) = check_rule_file(path)
    assert "composite cycle: c1 -> c2 -> c1" in problem


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    assert "cannot read" in check_rule_file(tmp_path / "missing.yaml")[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed")
    assert "not valid YAML" in check_rule_file(bad)[0]
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("rules:\n  - {kind: threshold}\n")
    assert any("rule '#1'" in p for p in check_rule_file(nameless))
