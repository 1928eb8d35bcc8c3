"""The edge validators: ids, 64-bit integers and the timestamp window, as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import (
    METRICS,
    ContractError,
    OutOfWindow,
    Reading,
    TimeWindow,
    check_reading,
    reading_problem,
)
from contract.errors import printable
from contract.reading import split_valid
from contract.topics import device_id_from_equipment_topic, equipment_topic
from contract.validation import (
    INT64_MAX,
    MAX_TS_US,
    check_id,
    check_ts,
    id_problem,
    int64_problem,
    ts_problem,
)
from tests.contract.strategies import (
    NOW_US,
    WINDOW,
    hostile_ids,
    in_window_ts,
    out_of_window_ts,
    oversized_ints,
    valid_ids,
    valid_readings,
    valid_seqs,
)


@given(valid_ids)
def test_every_valid_id_is_accepted(device_id: str) -> None:
    assert id_problem("device_id", device_id) is None
    assert check_id("device_id", device_id) == device_id


@given(hostile_ids())
def test_every_hostile_id_is_refused_with_a_printable_reason(device_id: object) -> None:
    reason = id_problem("device_id", device_id)
    assert reason is not None and reason.startswith("device_id")
    assert reason.isprintable()
    with pytest.raises(ContractError):
        check_id("device_id", device_id)


@pytest.mark.parametrize(
    ("device_id", "fragment"),
    [
        ("us\x00001", "U+0000"),
        ("us-1\n", "U+000A"),
        ("us-\ud800", "U+D800"),
        ("site/us-1", "'/'"),
        ("us-+", "'+'"),
        ("us-#", "'#'"),
        ("", "empty"),
        ("x" * 129, "longer than 128"),
        (7, "must be text"),
    ],
)
def test_id_reasons_say_what_is_wrong(device_id: object, fragment: str) -> None:
    reason = id_problem("device_id", device_id)
    assert reason is not None and fragment in reason


@given(valid_seqs)
def test_int64_accepts_its_range(value: int) -> None:
    assert int64_problem("seq", value) is None


@given(oversized_ints | st.integers(max_value=-1))
def test_int64_refuses_outside_its_range(value: int) -> None:
    reason = int64_problem("seq", value)
    assert reason is not None and reason.isprintable()


def test_int64_refuses_a_boolean() -> None:
    assert int64_problem("seq", True) == "seq must be an integer, not bool"
    assert int64_problem("seq", INT64_MAX) is None
    assert "64-bit" in str(int64_problem("seq", INT64_MAX + 1))


@given(in_window_ts)
def test_timestamps_in_the_window_pass(ts_us: int) -> None:
    assert ts_problem(ts_us, WINDOW) is None
    assert ts_problem(ts_us) is None  # and without a window, only representability counts


@given(out_of_window_ts | oversized_ints)
def test_timestamps_outside_the_window_fail_with_a_reason(ts_us: int) -> None:
    reason = ts_problem(ts_us, WINDOW)
    assert reason is not None and reason.startswith("ts_us") and reason.isprintable()
    with pytest.raises(OutOfWindow) as caught:
        check_ts(ts_us, WINDOW)
    assert caught.value.ahead == (WINDOW.hi_us < ts_us <= MAX_TS_US)


@given(st.integers(WINDOW.lo_us + 1_000_000, WINDOW.hi_us))
def test_seconds_millis_and_nanos_are_named(ts_us: int) -> None:
    for value, unit in (
        (ts_us // 1_000_000, "seconds"),
        (ts_us // 1_000, "milliseconds"),
        (ts_us * 1_000, "nanoseconds"),
    ):
        reason = ts_problem(value, WINDOW)
        assert reason is not None and f"looks like {unit}" in reason, (value, reason)
        assert "microseconds since the Unix epoch, UTC" in reason


def test_the_reasons_name_the_problem() -> None:
    assert "looks like seconds" in str(ts_problem(1_700_000_000, WINDOW))
    assert "looks like nanoseconds" in str(ts_problem(1_700_000_000_000_000_000))
    assert "year 9999" in str(ts_problem(MAX_TS_US + 1))  # year 10000
    assert "64-bit" in str(ts_problem(2**63))
    assert "not after the Unix epoch" in str(ts_problem(0))
    assert "in the future" in str(ts_problem(NOW_US + 3_600_000_000, WINDOW))
    assert "retention horizon of 400 days" in str(ts_problem(NOW_US - 401 * 86_400 * 10**6, WINDOW))


def test_a_window_bound_can_be_switched_off() -> None:
    open_ended = TimeWindow.at(NOW_US, None, None)
    assert open_ended.lo_us == 1 and open_ended.hi_us == MAX_TS_US
    assert ts_problem(1, open_ended) is None
    narrow = TimeWindow.at(NOW_US, 60.0, 1.0)
    assert narrow.lo_us == NOW_US - 60_000_000 and narrow.hi_us == NOW_US + 1_000_000


@given(valid_readings())
def test_every_valid_reading_passes_the_window_check(reading: Reading) -> None:
    check_reading(reading, WINDOW)


@given(
    valid_readings(),
    st.sampled_from(["device_id", "ts_us", "seq", "value", "metric"]),
    st.data(),
)
def test_one_hostile_field_fails_a_reading_with_a_printable_reason(
    reading: Reading, field: str, data: st.DataObject
) -> None:
    hostile: dict[str, st.SearchStrategy[object]] = {
        "device_id": hostile_ids(),
        "ts_us": out_of_window_ts | oversized_ints,
        "seq": oversized_ints | st.integers(max_value=-1),
        "value": st.sampled_from([float("nan"), float("inf"), -float("inf"), True, "230.6"]),
        "metric": st.text(max_size=30).filter(lambda m: m not in METRICS),
    }
    bad = reading._replace(**{field: data.draw(hostile[field])})
    with pytest.raises(ContractError) as caught:
        check_reading(bad, WINDOW)
    assert str(caught.value).isprintable()


@given(st.text(max_size=400))
def test_printable_never_lets_a_control_character_through(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    shown.encode("utf-8")  # no lone surrogate left


@given(st.sampled_from(["site-a", "ward 3"]), valid_ids)
def test_the_equipment_topic_round_trips(site: str, device_id: str) -> None:
    assert device_id_from_equipment_topic(equipment_topic(site, device_id)) == device_id


@pytest.mark.parametrize(
    "topic",
    [
        "vigil/v1/gateways/gw-1/batches",
        "site/site-a/equipment/us-1/telemetry/extra",
        "site/site-a/equipment//telemetry",
        "site/site-a/equipment/us-1/status",
        "",
    ],
)
def test_other_topics_name_no_device(topic: str) -> None:
    assert device_id_from_equipment_topic(topic) is None


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
)


@given(st.lists(valid_readings() | st.builds(Reading, *[anything] * 6), max_size=20))
def test_split_valid_agrees_with_reading_problem_and_never_raises(readings: list[Reading]) -> None:
    good, bad = split_valid(readings, WINDOW)
    assert good == [r for r in readings if reading_problem(*r, window=WINDOW) is None]
    assert [r for r, _ in bad] == [r for r in readings if r not in good]
    assert all(reason.isprintable() for _, reason in bad)
