"""The rule language: pydantic models for every rule kind, one condition type and a scope."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from contract.alert import Severity
from contract.catalog import METRICS
from rules.durations import parse_duration_us

Duration = Annotated[int, BeforeValidator(parse_duration_us)]


def _severity(value: object) -> object:
    """Accept severity names ("warning") as well as the contract's integers."""
    if isinstance(value, str):
        try:
            return Severity[value.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in Severity)
            raise ValueError(f"unknown severity {value!r}; use one of {names}") from None
    return value


def _as_list(value: object) -> object:
    """Let a scope filter be one string or a list of them."""
    return [value] if isinstance(value, str) else value


SeverityField = Annotated[Severity, BeforeValidator(_severity)]
NameList = Annotated[list[Annotated[str, Field(min_length=1)]] | None, BeforeValidator(_as_list)]
RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=128)]

_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
_TESTS = ("above", "below", "outside", "inside", "at_least", "at_most")


class Condition(BaseModel):
    """One test on a rule's signal, optionally required to hold continuously ``for`` a while."""

    model_config = _STRICT

    above: float | None = None
    below: float | None = None
    outside: tuple[float, float] | None = None
    inside: tuple[float, float] | None = None
    at_least: float | None = None
    at_most: float | None = None
    for_us: Duration = Field(default=0, alias="for")

    @model_validator(mode="after")
    def _exactly_one_test(self) -> Self:
        given = [name for name in _TESTS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_TESTS)} (got {given or 'none'})")
        for name in ("outside", "inside"):
            pair = getattr(self, name)
            if pair is not None and not pair[0] < pair[1]:
                raise ValueError(f"{name} needs [low, high] with low < high, got {list(pair)}")
        return self

    @property
    def test(self) -> tuple[str, float, float]:
        """The comparison as (operator, a, b); b is only used by the range operators."""
        for name in _TESTS:
            arg = getattr(self, name)
            if arg is None:
                continue
            if isinstance(arg, tuple):
                return name, float(arg[0]), float(arg[1])
            return name, float(arg), 0.0
        raise AssertionError("validated condition has no test")  # pragma: no cover

    def describe(self) -> dict[str, Any]:
        """The condition as plain data, for alert evidence."""
        return self.model_dump(exclude_none=True, by_alias=True)


class Scope(BaseModel):
    """Which series a rule watches: a metric plus optional device-registry filters."""

    model_config = _STRICT

    metric: str | None = None
    kind: NameList = None
    model: NameList = None
    site: NameList = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; the catalog has {', '.join(METRICS)}")
        return value


class _RuleBase(BaseModel):
    """Fields every rule carries."""

    model_config = _STRICT

    id: RuleId
    severity: SeverityField
    scope: Scope = Scope()
    source: Annotated[str, Field(min_length=1)]
    default: bool = False
    message: str = ""
    description: str = ""


class _SignalRule(_RuleBase):
    """A rule that turns each reading into a number and raises/clears on it with hysteresis."""

    raise_: Condition = Field(alias="raise")
    clear: Condition

    @model_validator(mode="after")
    def _needs_metric(self) -> Self:
        if self.scope.metric is None:
            raise ValueError("scope.metric is required for this rule kind")
        return self

    @property
    def metric(self) -> str:
        """The metric this rule reads (validated present)."""
        assert self.scope.metric is not None
        return self.scope.metric


class ThresholdRule(_SignalRule):
    """The reading's value against fixed limits; ``sustained`` insists the raise has a duration."""

    kind: Literal["threshold", "sustained"]

    @model_validator(mode="after")
    def _sustained_has_duration(self) -> Self:
        if self.kind == "sustained" and self.raise_.for_us <= 0:
            raise ValueError("a sustained rule needs raise.for greater than zero")
        return self


class RepeatingRule(_SignalRule):
    """How many readings within ``within`` matched ``match``; raise/clear test that count."""

    kind: Literal["repeating"]
    match: Condition
    within: Duration

    @model_validator(mode="after")
    def _match_is_instant(self) -> Self:
        if self.match.for_us:
            raise ValueError("match cannot have a 'for' duration; it tests single readings")
        if self.within <= 0:
            raise ValueError("within must be greater than zero")
        return self


class RateRule(_SignalRule):
    """Change per hour between the oldest reading inside ``window`` and the newest."""

    kind: Literal["rate"]
    window: Duration
    min_span: Duration = 0  # no rate until the readings used span at least this long

    @model_validator(mode="after")
    def _positive_window(self) -> Self:
        if self.window <= 0:
            raise ValueError("window must be greater than zero")
        if self.min_span >= self.window:
            raise ValueError("min_span must be shorter than window")
        return self


class ZScoreRule(_SignalRule):
    """The reading's z-score against the earlier readings inside ``window``."""

    kind: Literal["zscore"]
    window: Duration
    min_count: Annotated[int, Field(ge=2)] = 5
    # The sensor's noise floor: a window that happens to be flat (a few readings at the sensor's
    # resolution) must not turn the next ordinary reading into a "six sigma" jump.
    min_std: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _positive_window(self) -> Self:
        if self.window <= 0:
            raise ValueError("window must be greater than zero")
        return self


class DeltaBaselineRule(_SignalRule):
    """Reading minus the median of the series' own first ``baseline`` of data."""

    kind: Literal["delta_baseline"]
    baseline: Duration
    baseline_samples: Annotated[int, Field(ge=1, le=1024)] = 32

    @model_validator(mode="after")
    def _positive_baseline(self) -> Self:
        if self.baseline <= 0:
            raise ValueError("baseline must be greater than zero")
        return self


class DeltaReferenceRule(_SignalRule):
    """Reading minus the latest reading of a reference device (e.g. the contralateral limb)."""

    kind: Literal["delta_reference"]
    references: dict[str, str] = Field(default_factory=dict)
    max_age: Duration = 3_600_000_000


class BatteryLowRule(_RuleBase):
    """Sugar for a battery threshold: raise below ``below``, clear above ``clear_above``."""

    kind: Literal["battery_low"]
    below: float = 20.0
    clear_above: float = 30.0
    for_us: Duration = Field(default=0, alias="for")

    @model_validator(mode="after")
    def _battery_only(self) -> Self:
        if self.scope.metric not in (None, "battery"):
            raise ValueError("battery_low rules watch the 'battery' metric")
        if not self.clear_above >= self.below:
            raise ValueError("clear_above must be at least below")
        return self

    def expand(self) -> ThresholdRule:
        """The equivalent threshold rule."""
        return ThresholdRule.model_validate(
            {
                "kind": "threshold",
                "id": self.id,
                "severity": self.severity,
                "scope": self.scope.model_copy(update={"metric": "battery"}),
                "source": self.source,
                "default": self.default,
                "message": self.message,
                "description": self.description,
                "raise": Condition.model_validate({"below": self.below, "for": self.for_us}),
                "clear": Condition.model_validate({"above": self.clear_above}),
            }
        )


class SilenceRule(_RuleBase):
    """No reading for ``after``: of ``scope.metric`` if given, else of any metric of the device."""

    kind: Literal["silence"]
    after: Duration

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.after <= 0:
            raise ValueError("after must be greater than zero")
        return self


class CompositeRule(_RuleBase):
    """AND (``all_of``) or OR (``any_of``) over other rules' active states on the same device."""

    kind: Literal["composite"]
    all_of: list[RuleId] | None = None
    any_of: list[RuleId] | None = None
    clear_when: Literal["none_active", "not_all_active"] | None = None

    @model_validator(mode="after")
    def _one_combinator(self) -> Self:
        if (self.all_of is None) == (self.any_of is None):
            raise ValueError("give exactly one of all_of, any_of")
        if not self.components:
            raise ValueError("a composite needs at least one component rule")
        if self.scope.metric is not None:
            raise ValueError("a composite has no scope.metric; its components do")
        return self

    @property
    def components(self) -> list[str]:
        """The rule ids combined."""
        return list(self.all_of if self.all_of is not None else self.any_of or [])

    @property
    def clear_rule(self) -> str:
        """When the composite clears; default is the negation of its raise."""
        if self.clear_when is not None:
            return self.clear_when
        return "not_all_active" if self.all_of is not None else "none_active"


Rule = Annotated[
    ThresholdRule
    | RepeatingRule
    | RateRule
    | ZScoreRule
    | DeltaBaselineRule
    | DeltaReferenceRule
    | BatteryLowRule
    | SilenceRule
    | CompositeRule,
    Field(discriminator="kind"),
]
SignalRule = (
    ThresholdRule | RepeatingRule | RateRule | ZScoreRule | DeltaBaselineRule | (DeltaReferenceRule)
)
SIGNAL_KINDS = (
    ThresholdRule,
    RepeatingRule,
    RateRule,
    ZScoreRule,
    DeltaBaselineRule,
    DeltaReferenceRule,
)
AnyRule = SignalRule | BatteryLowRule | SilenceRule | CompositeRule


class RuleFile(BaseModel):
    """A YAML rule file: an optional pack header and a list of rules."""

    model_config = _STRICT

    pack: str | None = None
    description: str = ""
    disclaimer: str = ""
    rules: list[Rule]
