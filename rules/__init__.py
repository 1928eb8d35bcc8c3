"""vigil rules: a YAML rule language, a vectorized numpy engine, a reference evaluator, packs."""

from rules.alerts import ActiveAlert, AlertBook
from rules.columns import METRIC_NAMES, Columns, DeviceTable, columns_from_readings
from rules.engine import EngineStats, RuleEngine
from rules.errors import RuleFileError, RuleProblem
from rules.loader import PACKS, check_rule_file, load_pack, load_rule_file, parse_rules
from rules.model import AnyRule, Condition, Rule, Scope
from rules.policy import ReadingPolicy
from rules.reference import ReferenceEngine
from rules.registry import DeviceInfo, Registry

__all__ = [
    "METRIC_NAMES",
    "PACKS",
    "ActiveAlert",
    "AlertBook",
    "AnyRule",
    "Columns",
    "Condition",
    "DeviceInfo",
    "DeviceTable",
    "EngineStats",
    "ReadingPolicy",
    "ReferenceEngine",
    "Registry",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "RuleProblem",
    "Scope",
    "check_rule_file",
    "columns_from_readings",
    "load_pack",
    "load_rule_file",
    "parse_rules",
]
