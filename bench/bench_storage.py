"""Write throughput of the storage backends against PostgreSQL's own ceilings, in one run.

Run as ``.venv/bin/python -m bench.bench_storage [--rows N]``. For each durability setting
(headline: fsync, synchronous_commit and full_page_writes on, as deployed; secondary: all
off, as the tests run) it starts a private TimescaleDB, creates the schema with
TimescaleStore.migrate() (so every variant writes into the same hypertable with the same
unique index), and empties it between variants. Same rows, same transactions (10 batches of
1,000 readings each) for every variant:

(a) the server's own ``COPY readings FROM '<file>' (FORMAT binary)``: no client at all;
(b) psycopg's ``write_row`` COPY loop, one row at a time (the store's previous path);
(c) ``executemany`` of an INSERT;
(d) ``TimescaleStore.store_batches`` on batches decoded from the wire (what ingest stores):
    batch claims, then one binary COPY stream built from the columns in bulk;
(d') the same, every reading already stored (fallback: staging + ``ON CONFLICT``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence

import psycopg

from bench.durable_postgres import BenchPostgres
from contract import Batch, Reading, decode_batch, encode_batch
from infra.telemetry.copy_columns import copy_chunks
from infra.telemetry.sqlite import SQLiteStore
from infra.telemetry.timescale import READING_COLUMNS, TimescaleStore, copy_readings
from infra.time_us import datetime_from_us

BATCH_SIZE = 1_000
BATCHES_PER_CALL = 10
ROWS_PER_TXN = BATCH_SIZE * BATCHES_PER_CALL
T0_US = 1_767_225_600_000_000
METRICS = (
    ("wound_temp", "degC", 30.0),
    ("skin_temp", "degC", 30.0),
    ("wound_ph", "pH", 7.0),
    ("exudate", "%", 40.0),
)


def make_batches(rows: int, gateway_id: str) -> list[Batch]:
    """``rows`` readings from 250 patches at 1 Hz, four metrics each, in batches of 1,000."""
    readings: list[Reading] = []
    devices = 250
    for i in range(rows):
        tick, rest = divmod(i, devices * len(METRICS))
        device, m = divmod(rest, len(METRICS))
        metric, unit, level = METRICS[m]
        value = level + (i % 977) / 977  # valid for the metric: ingest would refuse others
        readings.append(
            Reading(f"patch-{device}", metric, value, unit, T0_US + tick * 1_000_000, tick)
        )
    return [
        Batch(gateway_id, n, tuple(readings[start : start + BATCH_SIZE]))
        for n, start in enumerate(range(0, rows, BATCH_SIZE))
    ]


def decoded(batches: Sequence[Batch]) -> list[Batch]:
    """The batches as ingest receives them: encoded on the wire, decoded into columns."""
    out = [decode_batch(encode_batch(b)) for b in batches]
    assert not any(d.rejected for d in out), "bench readings must be valid"
    return [d.batch for d in out]


def chunks(batches: Sequence[Batch], size: int) -> list[Sequence[Batch]]:
    """``batches`` cut into consecutive calls of ``size``."""
    return [batches[i : i + size] for i in range(0, len(batches), size)]


def timed(work: Callable[[], int]) -> tuple[int, float]:
    """Rows written by ``work`` and its wall time."""
    start = time.perf_counter()
    rows = work()
    return rows, time.perf_counter() - start


def reset(dsn: str) -> None:
    """Empty every table the write path touches (hypertable chunks included), then checkpoint,
    so that every timed run starts with the same WAL behind it (a checkpoint falling inside
    one run and not another was the largest run-to-run difference)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE readings, ingested_batches")
        conn.execute("VACUUM ANALYZE ingested_batches")
        conn.execute("CHECKPOINT")


def server_files(server: BenchPostgres, batches: Sequence[Batch]) -> list[str]:
    """One binary COPY file per transaction's worth of ``batches``, readable by the server."""
    paths = []
    for n, call in enumerate(chunks(decoded(batches), BATCHES_PER_CALL)):
        stream = copy_chunks(list(call))  # type: ignore[arg-type]  # decoded: columnar
        paths.append(str(server.server_file(f"copy-{n}.bin", stream)))
    return paths


def server_copy(dsn: str, paths: Sequence[str], rows: int) -> int:
    """(a) The ceiling: the server reads each file itself, one transaction per file."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for path in paths:
            with conn.transaction():
                cur.execute(
                    psycopg.sql.SQL("COPY readings ({}) FROM {} (FORMAT binary)").format(
                        psycopg.sql.SQL(READING_COLUMNS), psycopg.sql.Literal(path)
                    )
                )
    return rows


def raw_copy(dsn: str, batches: Sequence[Batch], per_call: int = BATCHES_PER_CALL) -> int:
    """(b) psycopg's write_row COPY loop, one transaction per ``per_call`` batches."""
    copy_sql = f"COPY readings ({READING_COLUMNS}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for call in chunks(batches, per_call):
            with conn.transaction():
                copy_readings(cur, copy_sql, list(call))
    return sum(len(b.readings) for b in batches)


def naive_insert(dsn: str, batches: Sequence[Batch], per_call: int = BATCHES_PER_CALL) -> int:
    """(c) executemany of a parameterised INSERT, one transaction per ``per_call`` batches."""
    insert_sql = f"INSERT INTO readings ({READING_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for call in chunks(batches, per_call):
            with conn.transaction():
                cur.executemany(
                    insert_sql,
                    [
                        (
                            datetime_from_us(r.ts_us),
                            r.device_id,
                            r.metric,
                            r.value,
                            r.unit,
                            r.seq,
                            b.gateway_id,
                            b.batch_seq,
                        )
                        for b in call
                        for r in b.readings
                    ],
                )
    return sum(len(b.readings) for b in batches)


def store_all(store: TimescaleStore | SQLiteStore, batches: Sequence[Batch]) -> int:
    """(d) store_batches with 10 batches of 1,000 readings per call."""
    return sum(
        store.store_batches(call).readings_inserted for call in chunks(batches, BATCHES_PER_CALL)
    )


LABELS = {
    "a": "(a) server-side COPY FROM file (binary)",
    "b": "(b) psycopg write_row COPY loop",
    "c": "(c) executemany INSERT",
    "d": "(d) TimescaleStore.store_batches, decoded batches",
    "d2": "(d') store_batches, all already stored (fallback)",
}


def measure(durable: bool, rows: int, naive_rows: int, repeats: int) -> dict[str, float]:
    """Rows/s of every variant on one cluster, best of ``repeats`` interleaved runs."""
    plain = make_batches(rows, "gw-bench")
    columnar = decoded(plain)
    naive = plain[: max(1, naive_rows // BATCH_SIZE)]
    # Same readings under fresh batch ids: every call must take the staging fallback.
    redelivered = decoded([Batch("gw-other", b.batch_seq, b.readings) for b in plain])
    best: dict[str, tuple[int, float]] = {}

    def keep(key: str, measured: tuple[int, float]) -> None:
        if key not in best or measured[1] < best[key][1]:
            best[key] = measured

    server = BenchPostgres(durable=durable)
    server.start()
    try:
        dsn = server.dsn
        print(f"cluster: {server.settings()}")
        paths = server_files(server, plain)
        with TimescaleStore(dsn) as store:
            store.migrate()
            for _ in range(repeats):
                reset(dsn)
                keep("a", timed(lambda: server_copy(dsn, paths, rows)))
                reset(dsn)
                keep("b", timed(lambda: raw_copy(dsn, plain)))
                reset(dsn)
                keep("c", timed(lambda: naive_insert(dsn, naive)))
                reset(dsn)
                keep("d", timed(lambda: store_all(store, columnar)))
                assert store.reading_count() == rows
                fallback_rows, fallback_s = timed(lambda: store_all(store, redelivered))
                assert fallback_rows == 0 and store.reading_count() == rows
                keep("d2", (rows, fallback_s))
    finally:
        server.cleanup()
    return {key: n / seconds for key, (n, seconds) in best.items()}


def sqlite_rate(rows: int, repeats: int) -> float:
    """Rows/s of SQLiteStore.store_batches (the embedded default), best of ``repeats``."""
    batches = decoded(make_batches(rows, "gw-bench"))
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp, SQLiteStore(f"{tmp}/b.db") as lite:
            lite.migrate()
            best = min(best, timed(lambda: store_all(lite, batches))[1])
    return rows / best


def main() -> None:
    """Run every variant on a durable and a non-durable cluster and print rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows per variant")
    parser.add_argument("--naive-rows", type=int, default=100_000, help="rows for executemany")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; best is kept")
    parser.add_argument("--sqlite", action="store_true", help="also SQLiteStore")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, PostgreSQL 15 + TimescaleDB; "
        f"batches of {BATCH_SIZE}, {BATCHES_PER_CALL} per transaction, best of {args.repeats}"
    )
    for durable in (True, False):
        rates = measure(durable, args.rows, args.naive_rows, args.repeats)
        print(f"durability {'ON (as deployed)' if durable else 'OFF (as the tests run)'}:")
        for key, label in LABELS.items():
            print(f"  {label:<52} {rates[key]:>12,.0f} rows/s  {rates[key] / rates['a']:5.2f}x (a)")
        print(f"  (d)/(b) store vs write_row loop: {rates['d'] / rates['b']:.2f}")
        print(f"  (d)/(a) store vs server COPY:    {rates['d'] / rates['a']:.2f}")
    if args.sqlite:
        print(f"SQLiteStore.store_batches: {sqlite_rate(args.rows, args.repeats):,.0f} rows/s")


if __name__ == "__main__":
    main()
