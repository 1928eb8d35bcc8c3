"""The full labelled synthetic cohort through the production rule path, scored (issue 11).

Eight cohorts (acute healing, chronic non-infected alkaline, plantar ulcer, fever without
infection, slow and fast infection, detachment, sensor fault) of ``--patients`` patients for
``--days`` days each, one reading per metric every 2 min, run through ``RuleEngine`` +
``AlertBook`` with the shipped dressing pack. Prints the Markdown report quoted in
docs/clinical-evaluation.md (``--out`` also writes it) and exits 1 if a target is missed.

    .venv/bin/python -m bench.bench_clinical [--patients 40] [--days 10] [--seed 11] [--out F]

A synthetic cohort tests the engine and the pack's logic, not clinical validity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rules import load_pack
from simulator.cohort import CohortSpec
from vigil.evaluation import check_targets, evaluate, report_markdown


def main() -> None:
    """Run the cohort and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = CohortSpec(patients=args.patients, days=args.days, seed=args.seed)
    result = evaluate(spec, load_pack("dressings"))
    text = report_markdown(result)
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    sys.exit(1 if check_targets(result) else 0)


if __name__ == "__main__":
    main()
