"""The rule language: pydantic models for every rule kind, one condition type and a scope.

Windowed kinds keep per-series (or per-wound) time buckets of ``resolution`` width; every check
the engine would make on a rule is made here, so ``vigil rules check`` refuses exactly what the
engine refuses.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from contract.alert import Severity
from contract.catalog import METRICS
from rules.durations import MAX_BUCKETS, describe_us, parse_duration_us, pick_resolution

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
    """A rule that turns each reading into a number and raises/clears on it with hysteresis.

    ``confirm``: once the raise condition has held (for its ``for``), the rule raises only when
    it holds again at least ``confirm`` later without the clear condition having held between:
    "still true after N hours", e.g. next-day confirmation.
    """

    raise_: Condition = Field(alias="raise")
    clear: Condition
    confirm: Duration = 0

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


def _buckets(spans: tuple[int, ...], resolution: int | None) -> int:
    """The bucket width for windows of ``spans``; ValueError naming what to change."""
    if resolution is None:
        picked = pick_resolution(spans)
        if picked is None:
            raise ValueError(
                "give a resolution: no standard bucket width (1m, 5m, 15m, 1h, 6h, 1d) divides "
                f"{', '.join(describe_us(s) for s in spans)} into at most 48 buckets"
            )
        return picked
    if resolution <= 0:
        raise ValueError("resolution must be greater than zero")
    for span in spans:
        if span % resolution:
            raise ValueError(
                f"window {describe_us(span)} is not a whole number of "
                f"{describe_us(resolution)} buckets"
            )
    if sum(spans) // resolution > MAX_BUCKETS:
        raise ValueError(f"more than {MAX_BUCKETS} buckets of {describe_us(resolution)}")
    return resolution


class _Bucketed(_SignalRule):
    """A rule over time buckets of ``resolution`` (default: picked from its windows)."""

    resolution: Duration | None = None

    def spans(self) -> tuple[int, ...]:
        """The window lengths the buckets must tile."""
        raise NotImplementedError

    @property
    def res_us(self) -> int:
        """The bucket width in µs (validated)."""
        return _buckets(tuple(s for s in self.spans() if s), self.resolution)

    @model_validator(mode="after")
    def _tiles(self) -> Self:
        spans = tuple(s for s in self.spans() if s)
        if not spans:
            if self.resolution is None:
                raise ValueError("give a resolution")
            return self
        _buckets(spans, self.resolution)
        return self


class _CountingRule(_Bucketed):
    """A rule that counts single readings passing ``match`` over one window, named by
    ``WINDOW_FIELD``."""

    WINDOW_FIELD: ClassVar[str]
    match: Condition

    def spans(self) -> tuple[int, ...]:
        """The counting window."""
        return (getattr(self, self.WINDOW_FIELD),)

    @model_validator(mode="after")
    def _match_is_instant(self) -> Self:
        if self.match.for_us:
            raise ValueError("match cannot have a 'for' duration; it tests single readings")
        if getattr(self, self.WINDOW_FIELD) <= 0:
            raise ValueError(f"{self.WINDOW_FIELD} must be greater than zero")
        return self


class RepeatingRule(_CountingRule):
    """How many readings within ``within`` (whole buckets, the current one included) matched."""

    WINDOW_FIELD: ClassVar[str] = "within"
    kind: Literal["repeating"]
    within: Duration


class ProportionRule(_CountingRule):
    """The fraction (0-1) of the readings within ``window`` that pass ``match``."""

    WINDOW_FIELD: ClassVar[str] = "window"
    kind: Literal["proportion"]
    window: Duration
    min_count: Annotated[int, Field(ge=1)] = 1


class RateRule(_SignalRule):
    """Change per hour between the oldest ring reading inside ``window`` and the newest."""

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


class ZScoreRule(_Bucketed):
    """The reading's z-score against the earlier readings inside ``window``."""

    kind: Literal["zscore"]
    window: Duration
    min_count: Annotated[int, Field(ge=2)] = 5
    # The sensor's noise floor: a window that happens to be flat (a few readings at the sensor's
    # resolution) must not turn the next ordinary reading into a "six sigma" jump.
    min_std: Annotated[float, Field(ge=0)] = 0.0

    def spans(self) -> tuple[int, ...]:
        """The statistics window."""
        return (self.window,)

    @model_validator(mode="after")
    def _positive_window(self) -> Self:
        if self.window <= 0:
            raise ValueError("window must be greater than zero")
        return self


Statistic = Literal["median", "mean"]
History = Literal["wound", "series"]
Coverage = Annotated[float, Field(gt=0, le=1)]


class RollingRule(_Bucketed):
    """A smoothed value: the median of bucket means, or the mean, over the completed ``window``."""

    kind: Literal["rolling"]
    statistic: Statistic = "median"
    window: Duration
    min_coverage: Coverage = 0.5  # fraction of the window's buckets that must hold readings

    def spans(self) -> tuple[int, ...]:
        """The smoothing window."""
        return (self.window,)

    @model_validator(mode="after")
    def _positive_window(self) -> Self:
        if self.window <= 0:
            raise ValueError("window must be greater than zero")
        return self


class _Learnt(_Bucketed):
    """A rule with a per-patient baseline learnt after an exclusion window (see docs/rules.md)."""

    exclude: Duration = 0  # after a patch's first reading: its readings teach and test nothing
    history: History = "wound"  # whose readings: the patient's wound (across patches) or a patch
    min_coverage: Coverage = 0.5


class TrendRule(_Learnt):
    """A smoothed recent value minus a reference: the prior window, or the learnt baseline."""

    kind: Literal["trend"]
    statistic: Statistic = "median"
    window: Duration  # 0: the current reading itself instead of a smoothed recent value
    against: Literal["prior", "baseline"] = "prior"
    prior: Duration = 0
    baseline: Duration = 0
    per: Duration | None = None  # express the difference per this much time (prior only)
    hold_reference: bool = False  # while raised, keep comparing with the reference at the raise

    def spans(self) -> tuple[int, ...]:
        """Recent and prior windows, or recent window and baseline span."""
        return (self.window, self.prior if self.against == "prior" else self.baseline)

    @model_validator(mode="after")
    def _reference(self) -> Self:
        if self.against == "prior":
            if self.prior <= 0:
                raise ValueError("a trend against its prior window needs prior > 0")
            if self.baseline:
                raise ValueError("baseline is for against: baseline")
        else:
            if self.baseline <= 0:
                raise ValueError("a trend against the baseline needs baseline > 0")
            if self.prior or self.per is not None:
                raise ValueError("prior and per are for against: prior")
        if self.per is not None and self.per <= 0:
            raise ValueError("per must be greater than zero")
        if self.window == 0 and self.per is not None:
            raise ValueError("per needs a recent window")
        if self.hold_reference and self.history != "series":
            raise ValueError("hold_reference needs history: series")
        return self


class DeltaBaselineRule(_Learnt):
    """Reading minus the patient's baseline: the median of bucket means over ``baseline``."""

    kind: Literal["delta_baseline"]
    baseline: Duration

    def spans(self) -> tuple[int, ...]:
        """The learning span."""
        return (self.baseline,)

    @model_validator(mode="after")
    def _positive_baseline(self) -> Self:
        if self.baseline <= 0:
            raise ValueError("baseline must be greater than zero")
        return self


class Offset(BaseModel):
    """How a contralateral pair learns its normal difference before comparing."""

    model_config = _STRICT

    learn: Duration
    exclude: Duration = 0
    resolution: Duration | None = None
    min_coverage: Coverage = 0.5

    @property
    def res_us(self) -> int:
        """The bucket width in µs."""
        return _buckets((self.learn,), self.resolution)

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.learn <= 0:
            raise ValueError("learn must be greater than zero")
        _buckets((self.learn,), self.resolution)
        return self


class DeltaReferenceRule(_SignalRule):
    """Reading minus the latest reading of a reference device (e.g. the contralateral limb)."""

    kind: Literal["delta_reference"]
    references: dict[str, str] = Field(default_factory=dict)
    max_age: Duration = 3_600_000_000
    offset: Offset | None = None  # learn the pair's normal difference and subtract it


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
    """All of, any of, or at least ``k`` of other rules active on the same device.

    ``for``: the combination must hold that long (it raises at the device's first reading, or
    tick, at or after): a confirmed composite.
    """

    kind: Literal["composite"]
    all_of: list[RuleId] | None = None
    any_of: list[RuleId] | None = None
    at_least: Annotated[int, Field(ge=1)] | None = None
    of: list[RuleId] | None = None
    clear_when: Literal["none_active", "not_all_active", "below_k"] | None = None
    for_us: Duration = Field(default=0, alias="for")

    @model_validator(mode="after")
    def _one_combinator(self) -> Self:
        given = [x is not None for x in (self.all_of, self.any_of, self.of)]
        if sum(given) != 1:
            raise ValueError("give exactly one of all_of, any_of, of (with at_least)")
        if (self.of is None) != (self.at_least is None):
            raise ValueError("at_least and of go together")
        if not self.components:
            raise ValueError("a composite needs at least one component rule")
        if len(set(self.components)) != len(self.components):
            raise ValueError("a component is listed twice")
        if self.at_least is not None and self.at_least > len(self.components):
            raise ValueError(f"at_least {self.at_least} of {len(self.components)} rules")
        if self.scope.metric is not None:
            raise ValueError("a composite has no scope.metric; its components do")
        return self

    @property
    def components(self) -> list[str]:
        """The rule ids combined."""
        return list(self.all_of or self.any_of or self.of or [])

    @property
    def k(self) -> int:
        """How many components must be active to raise."""
        if self.all_of is not None:
            return len(self.all_of)
        return self.at_least if self.at_least is not None else 1

    @property
    def clear_rule(self) -> str:
        """When the composite clears; default is the negation of its raise."""
        if self.clear_when is not None:
            return self.clear_when
        if self.all_of is not None:
            return "not_all_active"
        return "none_active" if self.any_of is not None else "below_k"

    def clear_below(self) -> int:
        """The composite clears when fewer than this many components are active."""
        rule = self.clear_rule
        if rule == "none_active":
            return 1
        if rule == "not_all_active":
            return len(self.components)
        return self.k


Rule = Annotated[
    ThresholdRule
    | RepeatingRule
    | ProportionRule
    | RateRule
    | ZScoreRule
    | RollingRule
    | TrendRule
    | DeltaBaselineRule
    | DeltaReferenceRule
    | BatteryLowRule
    | SilenceRule
    | CompositeRule,
    Field(discriminator="kind"),
]
SignalRule = (
    ThresholdRule
    | RepeatingRule
    | ProportionRule
    | RateRule
    | ZScoreRule
    | RollingRule
    | TrendRule
    | DeltaBaselineRule
    | DeltaReferenceRule
)
SIGNAL_KINDS = (
    ThresholdRule,
    RepeatingRule,
    ProportionRule,
    RateRule,
    ZScoreRule,
    RollingRule,
    TrendRule,
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
