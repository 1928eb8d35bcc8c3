"""What shared API rate budgets cost a request: the database against this process's memory.

Each simulated request does what ``service.api.deps.get_caller`` does with a valid token: the
failed-login check of the client address, then one hit of the token's request budget. Timed
for ``RateLimits`` in memory (one API process; SQLite) and over ``DatabaseRateStorage`` on a
private PostgreSQL with the deployed durability settings (fsync, synchronous_commit and
full_page_writes on), alternating rounds so both see the same machine. Also from several
threads at once (an API's thread pool), where the pool's connections are shared.

    .venv/bin/python -m bench.bench_rate_limits [--requests 3000] [--threads 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from bench.durable_postgres import BenchPostgres
from service.api.rate import RateLimits
from service.api.rate_storage import DatabaseRateStorage

ROUNDS = 5
BUDGET = "100000000/minute"  # never refused: the cost of counting, not of refusing


def per_request_us(limits: RateLimits, requests: int, threads: int) -> float:
    """Wall-clock microseconds per request over ``requests`` spread on ``threads``."""

    def one(n: int) -> None:
        limits.may_authenticate(f"10.0.{n % 7}.1")
        limits.request(f"token-{n % 50}")

    start = time.perf_counter()
    if threads == 1:
        for n in range(requests):
            one(n)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(requests)))
    return (time.perf_counter() - start) / requests * 1e6


def main() -> None:
    """Measure both, alternating rounds, and print medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    server = BenchPostgres(durable=True)
    server.start()
    try:
        print(f"cluster: {server.settings()}")
        storage = DatabaseRateStorage(server.dsn)
        paths = {"memory": RateLimits(BUDGET), "postgres": RateLimits(BUDGET, shared=storage)}
        for threads in (1, args.threads):
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(ROUNDS):
                for name, limits in paths.items():
                    times[name].append(per_request_us(limits, args.requests, threads))
            memory, shared = (statistics.median(times[name]) for name in paths)
            print(
                f"{threads} thread(s): memory {memory:8.1f} µs/request, "
                f"postgres {shared:8.1f} µs/request (median of {ROUNDS} rounds of "
                f"{args.requests}); postgres - memory {shared - memory:.1f} µs"
            )
        fallbacks = paths["postgres"].fallbacks
        print(f"requests counted in memory because the database failed: {fallbacks}")
        storage.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
