"""`vigil ingest run` under tracemalloc, writing what grew to a file every minute.

    .venv/bin/python -m bench.traced_ingest REPORT [ingest run options]

For ``bench.soak_ingest --tracemalloc REPORT``: the first snapshot, a minute in, is the
baseline (after warm-up); each later minute rewrites REPORT with the traced total and the
allocation sites (10 frames) that grew most since it. Tracing slows ingest down: the soak's
throughput is then not a figure to quote.
"""

from __future__ import annotations

import sys
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = 10
EVERY_S = 60.0
TOP = 25


def _report(path: Path, baseline: tracemalloc.Snapshot, minutes: int) -> None:
    snapshot = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"after {minutes} min: traced {current / 2**20:.1f} MB (peak {peak / 2**20:.1f} MB)"]
    for stat in snapshot.compare_to(baseline, "traceback")[:TOP]:
        lines.append(f"{stat.size_diff / 2**20:+.2f} MB, {stat.count_diff:+d} blocks")
        lines += [f"    {line}" for line in stat.traceback.format()]
    path.write_text("\n".join(lines) + "\n")


def _watch(path: Path) -> None:
    time.sleep(EVERY_S)
    baseline = tracemalloc.take_snapshot()
    minutes = 1
    while True:
        time.sleep(EVERY_S)
        minutes += 1
        _report(path, baseline, minutes)


def main() -> None:
    """Trace, start the watcher, then run the production CLI in this process."""
    report = Path(sys.argv[1])
    tracemalloc.start(FRAMES)
    threading.Thread(target=_watch, args=(report,), daemon=True, name="tracemalloc").start()
    from vigil.cli import app

    sys.argv = ["vigil", "ingest", "run", *sys.argv[2:]]
    app()


if __name__ == "__main__":
    main()
