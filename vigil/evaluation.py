"""`vigil rules evaluate`: the shipped packs on a labelled synthetic cohort, scored.

The cohort (``simulator.cohort``) is run through the production rule path — ``RuleEngine`` and
``AlertBook``, as ``RuleRuntime`` uses them, not the reference engine — one hour of readings per
batch, ticking at each batch's end. The result reports per cohort and per rule: sensitivity and
onset-to-alert times for the labelled events, false alerts per patient-day by severity, and
alerts that never clear. A synthetic cohort tests the engine and the pack's logic against the
simulator's assumptions (docs/clinical-evaluation.md), not clinical validity.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from contract.alert import AlertEvent, AlertTransition, Severity
from rules import AlertBook, DeviceInfo, RuleEngine
from rules.columns import METRIC_CODES, Columns
from rules.model import AnyRule
from simulator.cohort import METRICS, Cohort, CohortSpec, Label

US_PER_MIN = 60_000_000
# Which rules detect each kind of labelled event; any other warning or critical raise is false.
DETECTS: dict[str, frozenset[str]] = {
    "infection": frozenset({"dressing.infection.suspected", "dressing.infection_signs"}),
    "detachment": frozenset({"dressing.patch.off_skin"}),
    "sensor_fault": frozenset({"dressing.sensor.temp_implausible", "dressing.sensor.ph_jump"}),
    "fever": frozenset(),
}
HEALTHY = ("acute", "plantar", "fever")  # cohorts where nothing should stay raised
STUCK_AFTER_US = 24 * 3600 * 1_000_000  # "never clears": still up a day after its raise


@dataclass
class CohortScore:
    """One cohort's figures."""

    cohort: str
    patient_days: float
    events: int = 0
    detected: int = 0
    delays_min: list[float] = field(default_factory=list)  # onset to first detection
    critical_delays_min: list[float] = field(default_factory=list)
    false: Counter[Severity] = field(default_factory=Counter)  # warning/critical off target
    info: int = 0  # info raises (indicators, status flags)
    false_by_rule: Counter[str] = field(default_factory=Counter)
    raises_by_rule: Counter[str] = field(default_factory=Counter)
    detected_by_rule: Counter[str] = field(default_factory=Counter)
    delays_by_rule: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    stuck: Counter[tuple[str, Severity]] = field(default_factory=Counter)

    @property
    def sensitivity(self) -> float | None:
        """Share of labelled events detected (None without events)."""
        return self.detected / self.events if self.events else None

    def false_rate(self, *severities: Severity) -> float:
        """False alerts of these severities per patient-day."""
        return sum(self.false[s] for s in severities) / self.patient_days

    def stuck_count(self, *severities: Severity) -> int:
        """Alerts of these severities that never cleared."""
        return sum(n for (_, sev), n in self.stuck.items() if sev in severities)


@dataclass
class Evaluation:
    """Scores of every cohort, and how long the run took."""

    spec: CohortSpec
    scores: dict[str, CohortScore]
    readings: int
    seconds: float


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def median(values: Sequence[float]) -> float | None:
    """The median, None if empty."""
    return statistics.median(values) if values else None


def registry_of(cohort: Cohort) -> dict[str, DeviceInfo]:
    """The device registry a hospital would hold for the cohort's patches."""
    return {
        device: DeviceInfo(
            kind="patch", patient=d.patient, wound=d.wound, reference_wound=d.reference_wound
        )
        for device, d in cohort.device_info.items()
    }


def run_cohort(cohort: Cohort, rules: Sequence[AnyRule]) -> tuple[list[AlertEvent], AlertBook, int]:
    """Every alert event the rules make on the cohort, the final book, readings evaluated."""
    engine = RuleEngine(rules, registry_of(cohort))
    book = AlertBook()
    devices = engine.devices.intern_many(cohort.devices)
    codes = np.array([METRIC_CODES[m] for m in METRICS], dtype=np.intp)
    events: list[AlertEvent] = []
    n = 0
    for chunk in cohort.chunks():
        cols = Columns(devices[chunk.device], codes[chunk.metric], chunk.value, chunk.ts_us)
        n += len(cols)
        events += book.apply(engine.process(cols))
        events += book.apply(engine.tick(chunk.end_us))
    return events, book, n


def evaluate(spec: CohortSpec, rules: Sequence[AnyRule]) -> Evaluation:
    """Generate the cohort, run the rules, score every cohort."""
    started = time.perf_counter()
    cohort = Cohort(spec)
    events, book, n = run_cohort(cohort, rules)
    end_us = spec.start_us + round(spec.days * 86_400e6)
    scores = {c: CohortScore(c, cohort.patient_days) for c in spec.cohorts}
    by_device: dict[str, list[AlertEvent]] = defaultdict(list)
    for e in events:
        if e.transition is AlertTransition.RAISED:
            by_device[e.device_id].append(e)
    stuck = {
        (a.device_id, a.rule_id): a.severity
        for a in book.active()
        if end_us - a.raised_at_us >= STUCK_AFTER_US
    }
    for label in cohort.labels:
        _score(scores[label.cohort], label, by_device, stuck)
    return Evaluation(spec, scores, n, time.perf_counter() - started)


def _score(
    score: CohortScore,
    label: Label,
    by_device: dict[str, list[AlertEvent]],
    stuck: dict[tuple[str, str], Severity],
) -> None:
    """Fold one wound's alerts into its cohort's score."""
    raised = sorted((e for d in label.devices for e in by_device.get(d, [])), key=_at)
    detects = DETECTS.get(label.event or "", frozenset())
    if label.event is not None and detects:
        score.events += 1
    first: dict[str, int] = {}
    for e in raised:
        score.raises_by_rule[e.rule_id] += 1
        onset = label.onset_us
        on_target = e.rule_id in detects and onset is not None and e.at_us >= onset
        if label.patch is not None and e.device_id != label.patch:
            on_target = False  # a detachment or fault is about one patch
        if on_target:
            first.setdefault(e.rule_id, e.at_us)
        elif e.severity is Severity.INFO:
            score.info += 1  # an indicator or status flag: reported, not judged
        else:
            score.false[e.severity] += 1
            score.false_by_rule[e.rule_id] += 1
    if first and label.onset_us is not None:
        score.detected += 1
        score.delays_min.append((min(first.values()) - label.onset_us) / US_PER_MIN)
        for rule, at in first.items():
            score.detected_by_rule[rule] += 1
            score.delays_by_rule[rule].append((at - label.onset_us) / US_PER_MIN)
        if "dressing.infection_signs" in first:
            score.critical_delays_min.append(
                (first["dressing.infection_signs"] - label.onset_us) / US_PER_MIN
            )
    for (device, rule), severity in stuck.items():
        if device in label.devices:
            score.stuck[(rule, severity)] += 1


def _at(e: AlertEvent) -> int:
    return e.at_us


TARGETS = {
    "sensitivity": 0.95,  # of infections detected (slow and fast)
    "slow_median_min": 24 * 60,
    "fast_median_min": 6 * 60,
    "false_per_day": 0.1,  # warning or critical, each non-infected cohort
    "detach_within_min": 20,
}


def _fmt(x: float | None, unit: str = "", digits: int = 0) -> str:
    return "–" if x is None else f"{x:.{digits}f}{unit}"


def _hours(x: float | None) -> str:
    return "–" if x is None else f"{x / 60:.1f} h"


def cohort_table(ev: Evaluation) -> list[str]:
    """The per-cohort table, as Markdown lines."""
    lines = [
        "| cohort | patient-days | events | detected | onset → alert median | p90 "
        "| → critical median | false warning/day | false critical/day | info raises/day "
        "| never cleared (info / warning+) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    w, c, i = Severity.WARNING, Severity.CRITICAL, Severity.INFO
    for s in ev.scores.values():
        sens = "–" if s.sensitivity is None else f"{s.detected}/{s.events} ({s.sensitivity:.0%})"
        short = s.cohort in ("detachment", "sensor_fault")
        delay = (lambda x: _fmt(x, " min", 1)) if short else _hours
        lines.append(
            f"| {s.cohort} | {s.patient_days:.0f} | {s.events} | {sens} "
            f"| {delay(median(s.delays_min))} | {delay(quantile(s.delays_min, 0.9))} "
            f"| {_hours(median(s.critical_delays_min))} | {s.false_rate(w):.3f} "
            f"| {s.false_rate(c):.3f} | {s.info / s.patient_days:.2f} "
            f"| {s.stuck_count(i)} / {s.stuck_count(w, c)} |"
        )
    return lines


def rule_table(ev: Evaluation) -> list[str]:
    """Per cohort and rule: raises, false raises, detections and their delay."""
    lines = [
        "| cohort | rule | raises | of them false | detected | onset → alert median | p90 "
        "| never cleared |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in ev.scores.values():
        stuck = Counter({rule: n for (rule, _), n in s.stuck.items()})
        for rule in sorted(set(s.raises_by_rule) | set(stuck)):
            delays = s.delays_by_rule.get(rule, [])
            lines.append(
                f"| {s.cohort} | {rule} | {s.raises_by_rule[rule]} | {s.false_by_rule[rule]} "
                f"| {s.detected_by_rule[rule] or '–'} | {_fmt(median(delays), ' min')} "
                f"| {_fmt(quantile(delays, 0.9), ' min')} | {stuck[rule] or ''} |"
            )
    return lines


def check_targets(ev: Evaluation) -> list[str]:
    """Every target of issue 11 the evaluation misses, as text (empty: all met)."""
    misses: list[str] = []
    s = ev.scores
    w, c = Severity.WARNING, Severity.CRITICAL
    for name, limit in (
        ("slow_infection", "slow_median_min"),
        ("fast_infection", "fast_median_min"),
    ):
        if name not in s:
            continue
        sens, med = s[name].sensitivity, median(s[name].delays_min)
        if sens is None or sens < TARGETS["sensitivity"]:
            misses.append(f"{name}: sensitivity {sens} below {TARGETS['sensitivity']}")
        if med is None or med > TARGETS[limit]:
            misses.append(f"{name}: median onset to alert {med} min above {TARGETS[limit]}")
    for name, score in s.items():
        if name.endswith("_infection"):
            continue
        rate = score.false_rate(w, c)
        if rate > TARGETS["false_per_day"]:
            misses.append(f"{name}: {rate:.3f} false warning/critical alerts per patient-day")
        if score.stuck_count(w, c):
            misses.append(f"{name}: warning/critical alerts that never cleared: {score.stuck}")
        if name in HEALTHY and name != "plantar" and score.stuck_count(Severity.INFO):
            misses.append(f"{name}: info alerts that never cleared: {score.stuck}")
        if score.false_by_rule["dressing.patch.off_skin"]:
            misses.append(f"{name}: false detachments")
    if "detachment" in s:
        d = s["detachment"]
        fast = sum(1 for x in d.delays_min if x <= TARGETS["detach_within_min"])
        if d.events and fast / d.events < TARGETS["sensitivity"]:
            misses.append(f"detachment: {fast}/{d.events} detected within 20 min")
    return misses


def report_markdown(ev: Evaluation) -> str:
    """The evaluation as the Markdown section docs/clinical-evaluation.md quotes."""
    spec = ev.spec
    head = (
        f"Cohort: seed {spec.seed}, {spec.patients} patients per cohort, {spec.days:g} days, "
        f"one reading per metric every {spec.cadence_s:g} s; {ev.readings:,} readings "
        f"evaluated in {ev.seconds:.0f} s (generation included)."
    )
    misses = check_targets(ev)
    verdict = (
        "All targets met."
        if not misses
        else "Targets missed:\n\n" + "\n".join(f"* {m}" for m in misses)
    )
    return "\n".join([head, "", *cohort_table(ev), "", *rule_table(ev), "", verdict, ""])
