"""The shipped dressing pack on a reduced labelled synthetic cohort meets the issue-11 targets.

The full cohort runs as a benchmark (bench/bench_clinical.py, docs/clinical-evaluation.md). A
synthetic cohort tests the engine and the pack's logic against the simulator's assumptions, not
clinical validity.
"""

from __future__ import annotations

from contract.alert import Severity
from rules import load_pack
from simulator.cohort import CohortSpec
from vigil.evaluation import check_targets, evaluate, median, report_markdown

REDUCED = CohortSpec(patients=24, days=6.0, seed=5)


def test_reduced_cohort_meets_the_targets() -> None:
    result = evaluate(REDUCED, load_pack("dressings"))
    assert check_targets(result) == [], report_markdown(result)
    scores = result.scores
    for name in ("slow_infection", "fast_infection"):
        assert scores[name].events == REDUCED.patients
        assert (scores[name].sensitivity or 0) >= 0.95
    assert (median(scores["fast_infection"].delays_min) or 1e9) <= 6 * 60
    assert (median(scores["slow_infection"].delays_min) or 1e9) <= 24 * 60
    for name in ("acute", "chronic_alkaline", "plantar", "fever", "detachment", "sensor_fault"):
        assert scores[name].false_rate(Severity.WARNING, Severity.CRITICAL) <= 0.1
        assert scores[name].false_by_rule["dressing.patch.off_skin"] == 0
    assert scores["acute"].stuck_count(Severity.INFO, Severity.WARNING, Severity.CRITICAL) == 0
    detach = scores["detachment"]
    assert sum(d <= 20 for d in detach.delays_min) >= 0.95 * detach.events
