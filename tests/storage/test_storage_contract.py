"""The storage contract: every ReadingStore backend must pass all of these."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import pytest

from contract import AlertEvent, AlertTransition, Batch, Reading, Severity, WoundBaseline
from infra.telemetry import DeadLetter, ReadingStore, StoreOutcome
from tests.storage.conftest import OpenStore
from tests.storage.factories import MINUTE_US, T0_US, batch, batches, reading


def expected_checksum(readings: Sequence[Reading]) -> tuple[int, float]:
    """Count and value sum of distinct readings."""
    unique = {r.key: r for r in readings}
    return len(unique), math.fsum(r.value for r in unique.values())


def assert_checksum(store: ReadingStore, readings: Sequence[Reading]) -> None:
    """The store holds exactly ``readings`` by count and value sum."""
    count, total = store.reading_checksum()
    want_count, want_total = expected_checksum(readings)
    assert count == want_count
    assert total == pytest.approx(want_total, rel=1e-12)


def all_readings(batch_list: Sequence[Batch]) -> list[Reading]:
    """Every reading of every batch."""
    return [r for b in batch_list for r in b.readings]


def test_empty_store(store: ReadingStore) -> None:
    assert store.reading_count() == 0
    assert store.reading_checksum() == (0, 0.0)
    assert store.fetch_readings() == []
    assert store.dead_letter_count() == 0
    assert store.fetch_alert_events() == []


def test_counts_and_checksum(store: ReadingStore) -> None:
    stored = batches(5, 200)
    outcome = store.store_batches(stored)
    assert outcome == StoreOutcome(readings_inserted=1000, batches_new=5)
    assert store.reading_count() == 1000
    assert_checksum(store, all_readings(stored))


def test_empty_call_and_empty_batch(store: ReadingStore) -> None:
    assert store.store_batches([]) == StoreOutcome()
    assert store.store_batches([batch(0, [])]) == StoreOutcome(batches_new=1)
    assert store.store_batches([batch(0, [])]) == StoreOutcome(batches_duplicate=1)


def test_redelivered_batch_is_skipped(store: ReadingStore) -> None:
    stored = batches(3, 100)
    store.store_batches(stored)
    again = store.store_batches(stored)
    assert again == StoreOutcome(batches_duplicate=3)
    assert_checksum(store, all_readings(stored))


def test_redelivered_batch_with_changed_content_is_still_skipped(store: ReadingStore) -> None:
    store.store_batches([batch(7, [reading(1)])])
    outcome = store.store_batches([batch(7, [reading(1), reading(2)])])
    assert outcome == StoreOutcome(batches_duplicate=1)
    assert store.reading_count() == 1


def test_same_batch_twice_in_one_call(store: ReadingStore) -> None:
    [only] = batches(1, 50)
    outcome = store.store_batches([only, only])
    assert outcome == StoreOutcome(readings_inserted=50, batches_new=1, batches_duplicate=1)
    assert store.reading_count() == 50


def test_same_reading_in_another_batch_is_not_duplicated(store: ReadingStore) -> None:
    store.store_batches([batch(0, [reading(1), reading(2)])])
    outcome = store.store_batches([batch(0, [reading(1)], gateway_id="gw-2")])
    assert outcome == StoreOutcome(batches_new=1, readings_duplicate=1)
    assert_checksum(store, [reading(1), reading(2)])


def test_partially_overlapping_batches(store: ReadingStore) -> None:
    first = batch(0, [reading(i) for i in range(0, 600)])
    second = batch(1, [reading(i) for i in range(400, 1000)])
    store.store_batches([first])
    outcome = store.store_batches([second])
    assert outcome == StoreOutcome(readings_inserted=400, batches_new=1, readings_duplicate=200)
    assert_checksum(store, [reading(i) for i in range(1000)])
    # The fallback path must leave the store able to take the fast path again.
    third = batch(2, [reading(i) for i in range(1000, 1100)])
    assert store.store_batches([third]).readings_inserted == 100
    assert store.reading_count() == 1100


def test_overlap_within_one_call_and_with_stored(store: ReadingStore) -> None:
    store.store_batches([batch(0, [reading(0), reading(1)])])
    outcome = store.store_batches(
        [
            batch(1, [reading(1), reading(2), reading(2)]),
            batch(2, [reading(2), reading(3)]),
            batch(0, [reading(9)]),
        ]
    )
    assert outcome == StoreOutcome(
        readings_inserted=2, batches_new=2, batches_duplicate=1, readings_duplicate=3
    )
    assert_checksum(store, [reading(i) for i in range(4)])


def test_readings_keep_their_batch_of_origin(store: ReadingStore) -> None:
    store.store_batches([batch(3, [reading(0)], gateway_id="gw-9")])
    [back] = store.fetch_readings()
    assert back == reading(0)


@pytest.mark.parametrize("overlap", ["same_batches", "same_readings_other_batches"])
def test_concurrent_writers_store_exactly_one_copy(open_migrated: OpenStore, overlap: str) -> None:
    workers = [open_migrated(), open_migrated()]
    rounds = [batches(4, 250, gateway_id=f"gw-round-{n}", start=n * 1000) for n in range(5)]
    outcomes: list[list[StoreOutcome]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        try:
            for work in rounds:
                if overlap == "same_readings_other_batches":
                    # Same readings under different batch ids, one worker in reverse order.
                    work = [Batch(f"{b.gateway_id}-{index}", b.batch_seq, b.readings) for b in work]
                    if index:
                        work = list(reversed(work))
                barrier.wait(timeout=30)
                outcomes[index].append(workers[index].store_batches(work))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    expected = all_readings([b for work in rounds for b in work])
    assert_checksum(workers[0], expected)
    inserted = sum(o.readings_inserted for per in outcomes for o in per)
    assert inserted == len(expected)
    if overlap == "same_batches":
        assert sum(o.batches_new for per in outcomes for o in per) == 20
        assert sum(o.batches_duplicate for per in outcomes for o in per) == 20
    else:
        assert sum(o.readings_duplicate for per in outcomes for o in per) == len(expected)


def test_dead_letters_round_trip(store: ReadingStore) -> None:
    letters = [
        DeadLetter(
            T0_US + i,
            "vigil/v1/gateways/gw-1/batches",
            f"bad {i}",
            bytes([i, 0, 255]),
            "gw-1" if i % 2 else None,
            i if i % 2 else None,
        )
        for i in range(5)
    ]
    store.store_dead_letters(letters)
    store.store_dead_letters([])
    assert store.dead_letter_count() == 5
    assert store.dead_letters() == list(reversed(letters))
    assert store.dead_letters(limit=2) == [letters[4], letters[3]]


def test_alert_events_are_idempotent(store: ReadingStore) -> None:
    raised = AlertEvent(
        device_id="patch-1",
        rule_id="temp-high",
        severity=Severity.CRITICAL,
        transition=AlertTransition.RAISED,
        at_us=T0_US,
        message="wound too warm",
        evidence={"threshold": 38.5, "window": [{"ts_us": T0_US, "value": 39.1}], "n": 3},
    )
    cleared = raised.model_copy(
        update={"transition": AlertTransition.CLEARED, "at_us": T0_US + MINUTE_US, "evidence": {}}
    )
    other = raised.model_copy(update={"device_id": "patch-2", "at_us": T0_US + 1})
    assert store.store_alert_events([raised, cleared, other]) == 3
    assert store.store_alert_events([raised, cleared]) == 0
    assert store.store_alert_events([]) == 0
    assert store.fetch_alert_events() == [raised, other, cleared]
    assert store.fetch_alert_events("patch-1") == [raised, cleared]
    assert store.fetch_alert_events("nobody") == []


def alert(
    device_id: str,
    at_us: int,
    transition: AlertTransition = AlertTransition.RAISED,
    rule_id: str = "temp-high",
) -> AlertEvent:
    """An alert event of ``rule_id`` on ``device_id`` at ``at_us``."""
    return AlertEvent(
        device_id=device_id,
        rule_id=rule_id,
        severity=Severity.WARNING,
        transition=transition,
        at_us=at_us,
        message="m",
        evidence={"n": 1},
    )


def test_stored_alerts_are_unpublished_oldest_first(store: ReadingStore) -> None:
    late = alert("patch-1", T0_US + 2 * MINUTE_US)
    early = alert("patch-2", T0_US)
    middle = alert("patch-1", T0_US + MINUTE_US, rule_id="ph-high")
    assert store.unpublished_alert_events() == []
    store.store_alert_events([late, early])
    store.store_alert_events([middle])
    assert store.unpublished_alert_events() == [early, middle, late]
    assert store.unpublished_alert_events(limit=2) == [early, middle]


def test_marking_alerts_published_is_idempotent(store: ReadingStore) -> None:
    raised = alert("patch-1", T0_US)
    cleared = alert("patch-1", T0_US + MINUTE_US, AlertTransition.CLEARED)
    other = alert("patch-2", T0_US + 1)
    store.store_alert_events([raised, cleared, other])
    store.mark_alerts_published([other])
    assert store.unpublished_alert_events() == [raised, cleared]
    store.mark_alerts_published([other, raised])
    store.mark_alerts_published([raised])
    assert store.unpublished_alert_events() == [cleared]
    # Storing a published event again is a duplicate: it does not become unpublished.
    assert store.store_alert_events([raised, other]) == 0
    assert store.unpublished_alert_events() == [cleared]
    store.mark_alerts_published([cleared])
    assert store.unpublished_alert_events() == []
    # Publication is bookkeeping only: every event is still stored, in time order.
    assert store.fetch_alert_events() == [raised, other, cleared]


def test_marking_unknown_or_no_alerts_is_harmless(store: ReadingStore) -> None:
    stored = alert("patch-1", T0_US)
    store.store_alert_events([stored])
    store.mark_alerts_published([])
    # Same device and rule as a stored event, but not its key: nothing is marked.
    store.mark_alerts_published(
        [
            alert("patch-1", T0_US + 1),
            alert("patch-1", T0_US, AlertTransition.CLEARED),
            alert("nobody", T0_US),
        ]
    )
    assert store.unpublished_alert_events() == [stored]
    assert store.fetch_alert_events() == [stored]


def test_unpublished_alerts_are_shared_across_connections(
    store: ReadingStore, open_migrated: OpenStore
) -> None:
    # A restarted process (another connection) finds what the first left unpublished.
    first, second = alert("patch-1", T0_US), alert("patch-1", T0_US + 1, rule_id="ph-high")
    store.store_alert_events([first, second])
    store.mark_alerts_published([first])
    again = open_migrated()
    assert again.unpublished_alert_events() == [second]
    again.mark_alerts_published([second])
    assert store.unpublished_alert_events() == []


def test_fetch_readings_filters_and_orders(store: ReadingStore) -> None:
    # Stored out of order and across days (several hypertable chunks).
    day = 24 * 60
    wanted = [reading(i * 500) for i in range(10)]
    noise = [reading(i, device_id="patch-2") for i in range(5)] + [
        reading(i, metric="wound_ph") for i in range(5)
    ]
    store.store_batches([batch(0, list(reversed(wanted)) + noise)])
    assert store.fetch_readings(device_id="patch-1", metric="wound_temp") == wanted
    assert len(store.fetch_readings()) == 20
    assert store.fetch_readings(device_id="patch-2") == noise[:5]
    assert store.fetch_readings(metric="wound_ph") == noise[5:]
    window = store.fetch_readings(
        device_id="patch-1",
        metric="wound_temp",
        since_us=wanted[2].ts_us,
        until_us=wanted[5].ts_us,
    )
    assert window == wanted[2:5]
    assert store.fetch_readings(device_id="patch-1", metric="wound_temp", limit=3) == wanted[:3]
    assert store.fetch_readings(since_us=T0_US + 2 * day * MINUTE_US) == [
        r for r in wanted if r.ts_us >= T0_US + 2 * day * MINUTE_US
    ]


def test_fetch_orders_by_time_then_seq(store: ReadingStore) -> None:
    same_time = [Reading("patch-1", "battery", 50.0 + s, "%", T0_US, s) for s in (3, 1, 2)]
    store.store_batches([batch(0, same_time)])
    assert [r.seq for r in store.fetch_readings()] == [1, 2, 3]


def test_bucketed(store: ReadingStore) -> None:
    readings = [reading(i) for i in range(120)]  # one per minute for two hours
    other_device = [reading(i, device_id="x") for i in range(9)]
    store.store_batches([batch(0, readings), batch(1, other_device)])
    buckets = store.bucketed("patch-1", "wound_temp", 3600, T0_US, T0_US + 2 * 3600 * 1_000_000)
    assert [b.bucket_start_us for b in buckets] == [T0_US, T0_US + 3600 * 1_000_000]
    for got, hour in zip(buckets, (readings[:60], readings[60:]), strict=True):
        values = [r.value for r in hour]
        _, low, avg, high, samples = got
        assert (low, high, samples) == (min(values), max(values), 60)
        assert avg == pytest.approx(math.fsum(values) / 60)
    # Buckets align to the epoch, not to the query window, and the window is half-open.
    partial = store.bucketed(
        "patch-1", "wound_temp", 600, T0_US + 5 * MINUTE_US, T0_US + 20 * MINUTE_US
    )
    assert [(b.bucket_start_us, b.samples) for b in partial] == [
        (T0_US, 5),
        (T0_US + 10 * MINUTE_US, 10),
    ]
    assert store.bucketed("nobody", "wound_temp", 60, T0_US, T0_US + 3600 * 1_000_000) == []
    with pytest.raises(ValueError):
        store.bucketed("patch-1", "wound_temp", 0, T0_US, T0_US + 1)


def test_migrate_twice_is_harmless(store: ReadingStore, open_migrated: OpenStore) -> None:
    stored = batches(2, 100)
    store.store_batches(stored)
    store.migrate()
    store.migrate()
    again = open_migrated()
    assert_checksum(again, all_readings(stored))
    assert again.store_batches(stored) == StoreOutcome(batches_duplicate=2)


def test_migrate_keeps_publication_state(store: ReadingStore) -> None:
    done, pending = alert("patch-1", T0_US), alert("patch-1", T0_US + 1, rule_id="ph-high")
    store.store_alert_events([done, pending])
    store.mark_alerts_published([done])
    store.migrate()
    assert store.unpublished_alert_events() == [pending]


def test_concurrent_migrations(open_migrated: OpenStore, store_url: str) -> None:
    from infra.telemetry import open_store

    stores = [open_store(store_url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(s: ReadingStore) -> None:
        try:
            s.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    assert not errors, errors


def test_context_manager_closes(store_url: str) -> None:
    from infra.telemetry import open_store

    with open_store(store_url) as store:
        store.migrate()
        store.store_batches(batches(1, 10))
        assert store.reading_count() == 10
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own closed error
        store.reading_count()


# Retention. T0 is midnight UTC, so TimescaleDB's one-day chunks start on whole days.
DAY_US = 86_400_000_000


def at(ts_us: int, i: int, device_id: str = "patch-1") -> Reading:
    """A reading of ``device_id`` at ``ts_us`` with seq ``i``."""
    return reading(i, device_id)._replace(ts_us=ts_us, seq=i)


def test_prune_readings_removes_old_chunks_and_keeps_recent(store: ReadingStore) -> None:
    old = [at(T0_US - 10 * DAY_US + i * MINUTE_US, i) for i in range(30)]
    recent = [at(T0_US + i * MINUTE_US, 100 + i) for i in range(20)]
    store.store_batches([batch(0, old), batch(1, recent)])
    cutoff = T0_US - 5 * DAY_US

    dry = store.prune_readings(cutoff, dry_run=True)
    assert (dry.kind, dry.rows, dry.older_than_us) == ("readings", 30, cutoff)
    assert store.reading_count() == 50  # a dry run removes nothing

    pruned = store.prune_readings(cutoff)
    assert pruned.rows == 30 and pruned.how == dry.how
    assert store.fetch_readings() == recent
    assert store.prune_readings(cutoff).rows == 0  # nothing left to prune


def test_prune_readings_never_touches_the_cutoff_or_later(store: ReadingStore) -> None:
    # Readings just before the cutoff may stay with TimescaleDB (their chunk straddles it);
    # those at and after it always stay, and those a chunk earlier always go.
    cutoff = T0_US + DAY_US // 2
    gone = at(T0_US - 1, 1)
    maybe = at(cutoff - 1, 2)
    kept = [at(cutoff, 3), at(cutoff + 1, 4), at(T0_US + 3 * DAY_US, 5)]
    store.store_batches([batch(0, [gone, maybe, *kept])])
    pruned = store.prune_readings(cutoff)
    left = store.fetch_readings()
    assert gone not in left and set(kept) <= set(left)
    assert pruned.rows == 5 - len(left)


def test_prune_dead_letters_by_age(store: ReadingStore) -> None:
    old = [DeadLetter(T0_US - DAY_US - i, "gw/a", f"old {i}", b"x") for i in range(3)]
    recent = [DeadLetter(T0_US + i, "gw/a", f"new {i}", b"y") for i in range(2)]
    store.store_dead_letters([*old, *recent])
    assert store.prune_dead_letters(T0_US, dry_run=True).rows == 3
    assert store.dead_letter_count() == 5
    assert store.prune_dead_letters(T0_US).rows == 3
    assert store.dead_letters() == recent[::-1]


def _after(instant_us: int) -> int:
    """Wait until the wall clock has passed ``instant_us``; return the time then."""
    from infra.time_us import now_us

    while (now := now_us()) <= instant_us:
        pass
    return now


def test_prune_batch_claims_by_age(store: ReadingStore) -> None:
    from infra.time_us import now_us

    early, late = batch(0, [reading(1)]), batch(1, [reading(2)])
    store.store_batches([early])
    between = _after(now_us())
    _after(between)
    store.store_batches([late])

    assert store.prune_batch_claims(between, dry_run=True).rows == 1
    assert store.store_batches([early]) == StoreOutcome(batches_duplicate=1)  # still claimed
    assert store.prune_batch_claims(between).rows == 1
    # The late claim stays: its resend is a duplicate; the early one is forgotten, so its
    # resend is a new batch, but its reading is still kept and is not stored twice.
    assert store.store_batches([late]) == StoreOutcome(batches_duplicate=1)
    assert store.store_batches([early]) == StoreOutcome(batches_new=1, readings_duplicate=1)
    assert_checksum(store, [reading(1), reading(2)])


def test_a_resent_batch_after_pruning_follows_the_retention_rule(store: ReadingStore) -> None:
    """Claims outlive readings, so a resend of a pruned batch is a duplicate until both go.

    Once its claim is gone too the store takes it as new (ingest's reading-age window refuses
    such old readings first, see tests/retention), and the next prune removes them again.
    """
    from infra.time_us import now_us

    old = batch(0, [at(T0_US - 10 * DAY_US + i, i) for i in range(5)])
    store.store_batches([old])
    readings_cutoff = T0_US - 5 * DAY_US
    assert store.prune_readings(readings_cutoff).rows == 5

    # The claim is younger than the claim retention: the resend stores nothing.
    assert store.store_batches([old]) == StoreOutcome(batches_duplicate=1)
    assert store.reading_count() == 0

    assert store.prune_batch_claims(_after(now_us())).rows == 1
    assert store.store_batches([old]).batches_new == 1
    assert store.prune_readings(readings_cutoff).rows == 5
    assert store.reading_count() == 0


def test_latest_reading_of_each_metric_of_each_device(store: ReadingStore) -> None:
    temps = [reading(i) for i in range(30)]
    phs = [reading(i, metric="wound_ph") for i in range(5)]
    other = [reading(i, device_id="patch-2", metric="battery") for i in range(3)]
    store.store_batches([batch(0, list(reversed(temps)) + phs), batch(1, other)])
    latest = store.latest_by_device(["patch-1", "patch-2", "nobody"])
    assert latest == [phs[-1], temps[-1], other[-1]]  # by device, then metric
    assert store.latest_by_device(["patch-2"]) == [other[-1]]
    assert store.latest_by_device([]) == []
    # Only readings at or after ``since_us`` count: patch-2 has none that late.
    recent = store.latest_by_device(["patch-1", "patch-2"], since_us=temps[10].ts_us)
    assert recent == [temps[-1]]


def test_alert_pages_in_time_order_and_active_alerts(store: ReadingStore) -> None:
    events = [
        alert("patch-1", T0_US),
        alert("patch-2", T0_US + 1, rule_id="ph-high"),
        alert("patch-1", T0_US + 2, AlertTransition.CLEARED),
        alert("patch-3", T0_US + 3),
        alert("patch-1", T0_US + 4, rule_id="ph-high"),
    ]
    store.store_alert_events(list(reversed(events)))
    assert store.alert_page(None) == events
    first = store.alert_page(None, limit=2)
    assert first == events[:2]
    after = (first[-1].at_us, first[-1].device_id, first[-1].rule_id, first[-1].transition.value)
    assert store.alert_page(None, after=after, limit=2) == events[2:4]
    assert store.alert_page(["patch-1"]) == [events[0], events[2], events[4]]
    assert store.alert_page([]) == []
    # temp-high on patch-1 was cleared; the rest are still active.
    active = store.active_alerts(["patch-1", "patch-2"])
    assert active == [events[4], events[1]]
    assert store.active_alerts([]) == []


def test_a_device_sets_alert_pages_follow_the_time_order_across_devices(
    store: ReadingStore,
) -> None:
    # Several devices alerting at the same instants: a page of a set of devices takes its
    # first events in (time, device, rule, transition) order, however they fall per device.
    events = [
        alert(device, T0_US + step, rule_id=rule)
        for step in range(4)
        for device in ("patch-3", "patch-1", "patch-2")
        for rule in ("temp-high", "ph-high")
    ]
    store.store_alert_events(events)
    mine = ["patch-2", "patch-1", "patch-2"]  # any order, repeats ignored
    wanted = sorted(
        (e for e in events if e.device_id in mine),
        key=lambda e: (e.at_us, e.device_id, e.rule_id, e.transition.value),
    )
    paged: list[AlertEvent] = []
    after = None
    while page := store.alert_page(mine, after=after, limit=3):
        paged += page
        last = page[-1]
        after = (last.at_us, last.device_id, last.rule_id, last.transition.value)
    assert paged == wanted
    # A period is [since, until): both bounds apply to a set of devices as to every device.
    period = store.alert_page(mine, since_us=T0_US + 1, until_us=T0_US + 3, limit=100)
    assert period == [e for e in wanted if T0_US + 1 <= e.at_us < T0_US + 3]
    everyone = store.alert_page(None, since_us=T0_US + 1, until_us=T0_US + 3, limit=100)
    assert len(everyone) == 12


def _baseline(device: str, rule: str, base: float, now: float | None, at_us: int) -> WoundBaseline:
    return WoundBaseline(device, rule, "wound_temp", base, now, at_us)


def test_baselines_keep_the_latest_of_each_device_and_rule(store: ReadingStore) -> None:
    first = [
        _baseline("patch-2", "temp.rise", 33.0, 33.4, T0_US),
        _baseline("patch-1", "temp.rise", 32.5, None, T0_US),
        _baseline("patch-1", "ph.rise", 7.1, 7.2, T0_US),
    ]
    store.store_baselines(first)
    assert store.baselines(["patch-1", "patch-2", "patch-9"]) == sorted(
        first, key=lambda b: (b.device_id, b.rule_id)
    )
    # A newer row replaces; an older one (a writer behind) does not; repeats in one call keep
    # the last.
    newer = _baseline("patch-2", "temp.rise", 33.0, 33.9, T0_US + MINUTE_US)
    older = _baseline("patch-1", "temp.rise", 30.0, 30.0, T0_US - MINUTE_US)
    store.store_baselines([older, _baseline("patch-2", "temp.rise", 1.0, 1.0, T0_US), newer])
    assert store.baselines(["patch-2"]) == [newer]
    assert store.baselines(["patch-1"])[1] == first[1]
    assert store.baselines([]) == []
    store.store_baselines([])
    many = [f"patch-{n}" for n in range(1200)]  # more ids than one SQLite statement takes
    assert len(store.baselines(many)) == 3


def test_baselines_of_patches_gone_silent_are_pruned_by_their_stamp(store: ReadingStore) -> None:
    old = [_baseline(f"gone-{i}", "temp.rise", 33.0, None, T0_US - 31 * DAY_US) for i in range(3)]
    kept = _baseline("patch-1", "temp.rise", 33.0, 33.2, T0_US - DAY_US)
    store.store_baselines([*old, kept])
    cutoff = T0_US - 30 * DAY_US
    assert store.prune_baselines(cutoff, dry_run=True).rows == 3
    assert len(store.baselines([b.device_id for b in old])) == 3  # a dry run removes nothing
    pruned = store.prune_baselines(cutoff)
    assert (pruned.kind, pruned.rows, pruned.older_than_us) == ("baselines", 3, cutoff)
    assert store.baselines([*(b.device_id for b in old), "patch-1"]) == [kept]
    assert store.prune_baselines(cutoff).rows == 0
    # A patch reporting again is written again, and kept.
    back = _baseline("gone-1", "temp.rise", 33.0, 33.1, T0_US)
    store.store_baselines([back])
    assert store.baselines(["gone-1"]) == [back]


def test_a_baseline_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="not finite"):
        WoundBaseline("patch-1", "temp.rise", "wound_temp", math.nan, None, T0_US)
    with pytest.raises(ValueError, match="not finite"):
        WoundBaseline("patch-1", "temp.rise", "wound_temp", 33.0, math.inf, T0_US)
    assert WoundBaseline("p", "r", "wound_temp", 33.0, 32.5, 0).delta == -0.5
