"""ReplayGuard: strictly increasing counters per device."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from contract.ble import ReplayGuard, ReplayReason


def test_accepts_increasing_and_rejects_replays() -> None:
    guard = ReplayGuard()
    assert guard.accept("p1", 5) is None
    assert guard.accept("p1", 5) is ReplayReason.REPLAYED
    assert guard.accept("p1", 4) is ReplayReason.STALE
    assert guard.accept("p1", 9) is None  # gaps are fine: frames get lost
    assert guard.last("p1") == 9


def test_devices_are_independent() -> None:
    guard = ReplayGuard()
    assert guard.accept("p1", 100) is None
    assert guard.accept("p2", 1) is None
    assert guard.last("p3") is None


def test_check_changes_nothing_and_forget_resets() -> None:
    guard = ReplayGuard()
    assert guard.check("p1", 3) is None
    assert guard.last("p1") is None
    guard.accept("p1", 3)
    guard.forget("p1")
    assert guard.accept("p1", 0) is None


def test_invalid_counters() -> None:
    guard = ReplayGuard()
    assert guard.accept("p1", -1) is ReplayReason.INVALID
    assert guard.accept("p1", 1 << 32) is ReplayReason.INVALID
    assert guard.last("p1") is None


@given(st.lists(st.integers(0, 50), max_size=60))
def test_accepted_sequence_is_strictly_increasing(counters: list[int]) -> None:
    guard = ReplayGuard()
    accepted = [c for c in counters if guard.accept("p", c) is None]
    assert accepted == sorted(set(accepted))
    assert all(a < b for a, b in pairwise(accepted))
    for c in counters:
        assert guard.check("p", c) is not None  # nothing seen can come back
